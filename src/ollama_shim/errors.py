"""The shim's exception tree; each error knows the HTTP status and text Ollama would give.

    ShimError                      any failure a client should see as {"error": "..."}
    ├── BadRequest (400)           the request itself is wrong (JSON, types, values)
    ├── ModelNotFound (404)        no backend serves that model name
    ├── PayloadTooLarge (413)
    ├── Unauthorized (401)         inbound API key missing or wrong
    └── UpstreamError              the backend failed; status chosen from what it said
        ├── UpstreamStatus         the backend answered with an HTTP error (its status, its message)
        ├── UpstreamUnreachable (502)  no connection could be made
        ├── UpstreamTimeout (504)  connect, first byte, idle or total time ran out
        └── UpstreamProtocol (502) the backend sent something that is not the protocol

Routes raise these (aiohttp's own 404/405 for unknown paths and methods are given the same
shape); one middleware renders them before the first byte, and the NDJSON writer
renders them as a last line after it. Nothing else builds an error body.

May import: stdlib.
"""

from __future__ import annotations


class ShimError(Exception):
    status = 500

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class BadRequest(ShimError):
    status = 400


class ModelNotFound(ShimError):
    status = 404

    def __init__(self, name: str, *, quote: str = "'") -> None:
        suffix = ", try pulling it first" if quote == '"' else ""
        super().__init__(f"model {quote}{name}{quote} not found{suffix}")
        self.name = name

    def with_hint(self, hint: str) -> ModelNotFound:
        """The same error with a sentence on what to do about it."""
        self.message = f"{self.message}; {hint}"
        return self


class PayloadTooLarge(ShimError):
    status = 413


class Unauthorized(ShimError):
    status = 401


class UpstreamError(ShimError):
    status = 502


class UpstreamStatus(UpstreamError):
    """The backend answered with an HTTP error; its status and message are kept."""


class UpstreamUnreachable(UpstreamError):
    status = 502


class UpstreamTimeout(UpstreamError):
    status = 504


class UpstreamProtocol(UpstreamError):
    status = 502
