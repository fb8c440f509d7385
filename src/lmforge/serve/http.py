"""HTTP plumbing shared by the endpoints: body limits, JSON parsing, API keys, concurrency slots."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from lmforge.serve.access import key_matches
from lmforge.serve.apierror import APIError


async def read_json(request: Request, limit: int) -> Any:
    """The request body parsed as JSON; 413 past ``limit`` bytes (checked while reading), 400 if bad."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"request body is larger than {limit} bytes", "body_too_large")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise APIError(413, f"request body is larger than {limit} bytes", "body_too_large")
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise APIError(400, f"the body is not valid JSON: {exc}", "invalid_json") from None


def check_auth(request: Request, keys: list[str]) -> None:
    """401 unless ``Authorization: Bearer <key>`` matches a configured key (no keys = open)."""
    if not keys:
        return
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise APIError(401, "missing API key: send Authorization: Bearer <key>", "missing_api_key")
    if not key_matches(token, keys):
        raise APIError(401, "invalid API key", "invalid_api_key")


class Slots:
    """Counts requests in flight; ``acquire`` raises 503 when ``limit`` are already running."""

    def __init__(self, limit: int):
        self.limit, self.used = limit, 0

    def acquire(self) -> None:
        if self.used >= self.limit:
            raise APIError(503, f"server busy: {self.limit} requests in flight, retry later", "server_busy")
        self.used += 1

    def release(self) -> None:
        self.used = max(0, self.used - 1)
