"""Log lines: the request id on every line, the text and JSON formats, and the access-log line.

``configure(level, fmt)`` installs one stderr handler on the root logger with
``RequestIdFilter`` (which copies ``request_id.REQUEST_ID`` onto each record as ``request_id``, ``-``
outside a request) and the formatter ``fmt`` names:

- ``text``: ``TIME LEVEL LOGGER [REQUEST_ID]: MESSAGE``;
- ``json``: one object per line with ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
  ``request_id``, ``exception`` when there is one, and the access fields as keys of their own.

``log_access(fields)`` writes the one line per request (logger ``ollama_shim.access``): method,
path, model, backend, status, duration and tokens, never any prompt text; at debug for the shim's
own probes, scrapes and status page (``metrics.QUIET_PATHS``), else at info.

May import: stdlib, ``ollama_shim.request_id``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Mapping
from typing import TextIO

from .request_id import REQUEST_ID

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
ACCESS_FIELD = "access"  # the LogRecord attribute holding the access fields

access_log = logging.getLogger("ollama_shim.access")


class RequestIdFilter(logging.Filter):
    """Gives every record a ``request_id``: the id of the request it was logged for, or ``-``."""

    def filter(self, record: logging.LogRecord) -> bool:
        setattr(record, "request_id", REQUEST_ID.get() or "-")  # noqa: B010 (not a declared attribute)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": _utc(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": _request_id(record),
        }
        fields = getattr(record, ACCESS_FIELD, None)
        if isinstance(fields, Mapping):
            out.update(fields)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


def _request_id(record: logging.LogRecord) -> str | None:
    """The record's request id (set by ``RequestIdFilter``), None outside a request."""
    found = getattr(record, "request_id", None) or REQUEST_ID.get()
    return None if found in ("-", "") else found


def _utc(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


def formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)


def configure(level: str, fmt: str = "text", stream: TextIO | None = None) -> None:
    """The process's one log handler: ``stream`` (stderr), the request-id filter, format ``fmt``."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(formatter(fmt))
    logging.basicConfig(level=level.upper(), handlers=[handler])


def log_access(fields: Mapping[str, str | int | float], *, quiet: bool = False) -> None:
    """The access-log line of one finished request, at debug if ``quiet`` (a probe, a scrape, the status
    page polling) else info; ``fields`` are its keys in the JSON format."""
    level = logging.DEBUG if quiet else logging.INFO
    if not access_log.isEnabledFor(level):
        return
    text = " ".join(f"{key}={value}" for key, value in fields.items() if key not in ("method", "path"))
    access_log.log(level, "%s %s %s", fields.get("method"), fields.get("path"), text, extra={ACCESS_FIELD: fields})
