"""OpenAI-style API errors: ``{"error": {"message", "type", "code"}}`` with a proper HTTP status."""

from __future__ import annotations

from typing import Any

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "server_error",
    504: "timeout_error",
}


class APIError(Exception):
    """An error answered to the client; ``status`` is the HTTP status, ``code`` a short slug."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers  # extra response headers (Retry-After on 503 server_busy)

    def body(self) -> dict[str, Any]:
        """The JSON body OpenAI clients parse."""
        err = {"message": self.message, "type": _TYPES.get(self.status, "server_error"),
               "code": self.code, "param": self.param}
        return {"error": err}
