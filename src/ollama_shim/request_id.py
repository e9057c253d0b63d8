"""The id of the request being handled: taken from the client's ``X-Request-ID`` or made, held in a
context variable for the log lines and upstream calls made on that request's behalf.

A client's id is kept when it is 1 to ``MAX_CHARS`` visible ASCII characters (no spaces, no
control characters, so it can go into a log line and a backend's header as it is); anything else
is replaced by a new one, a uuid4 in hex.

May import: stdlib.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

HEADER = "X-Request-ID"
MAX_CHARS = 128
_VALID = re.compile(rf"[!-~]{{1,{MAX_CHARS}}}")

# The id of the request this task serves; "" outside any request (start-up, shutdown).
REQUEST_ID: ContextVar[str] = ContextVar("request_id", default="")


def new_request_id() -> str:
    return uuid.uuid4().hex


def accept_request_id(sent: str | None) -> str:
    """The client's id if it is fit to log and forward, else a new one."""
    if sent is not None and _VALID.fullmatch(sent):
        return sent
    return new_request_id()
