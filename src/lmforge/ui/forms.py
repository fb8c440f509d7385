"""Request bodies: read with a size limit (413 past it, also for chunked bodies), parsed as a form."""

from __future__ import annotations

from urllib.parse import parse_qs

from starlette.exceptions import HTTPException
from starlette.requests import Request


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body; HTTP 413 as soon as it passes ``limit`` bytes (declared or read)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"request body is larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise HTTPException(413, f"request body is larger than {limit} bytes")
    return bytes(body)


async def read_form(request: Request, limit: int) -> dict[str, list[str]]:
    """An ``application/x-www-form-urlencoded`` body as {field: [values]}; 400 if it is not one."""
    body = await read_body(request, limit)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPException(400, "the form is not UTF-8") from None
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if text and kind not in ("application/x-www-form-urlencoded", ""):
        raise HTTPException(415, "send the form as application/x-www-form-urlencoded")
    try:
        return parse_qs(text, keep_blank_values=True, strict_parsing=False, max_num_fields=200)
    except ValueError as exc:
        raise HTTPException(400, f"bad form: {exc}") from None


def field(form: dict[str, list[str]], name: str, default: str | None = None, *, max_chars: int = 20_000) -> str:
    """One form value (the last given); 400 when missing without a default or longer than ``max_chars``."""
    values = form.get(name)
    if not values:
        if default is None:
            raise HTTPException(400, f"the form has no '{name}' field")
        return default
    value = values[-1]
    if len(value) > max_chars:
        raise HTTPException(400, f"'{name}' is longer than {max_chars} characters")
    return value
