"""HTTP plumbing shared by the endpoints: body limits, JSON parsing and checks, API keys."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from lmforge.serve.access import key_matches
from lmforge.serve.apierror import APIError

MAX_JSON_DEPTH = 64  # OpenAI bodies nest ~6 deep (tool schemas a little more); deeper is not a request


async def read_json(request: Request, limit: int) -> Any:
    """The request body parsed as JSON; 413 past ``limit`` bytes (checked while reading), 400 if it
    is not JSON, nests deeper than MAX_JSON_DEPTH, or holds a string that is not valid Unicode.

    The Content-Type header is not checked (``curl -d`` sends form-encoded): the body decides.
    """
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise APIError(413, f"request body is larger than {limit} bytes", "body_too_large")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise APIError(413, f"request body is larger than {limit} bytes", "body_too_large")
    try:
        data = json.loads(body)
    except RecursionError:  # json's C parser recurses once per level; unwinding is safe
        raise APIError(400, f"the body is not valid JSON: nested deeper than {MAX_JSON_DEPTH} levels",
                       "invalid_json") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of > 4300 digits
        raise APIError(400, f"the body is not valid JSON: {str(exc)[:200]}", "invalid_json") from None
    check_json_tree(data)
    return data


def check_json_tree(data: Any, max_depth: int = MAX_JSON_DEPTH) -> None:
    """400 naming the place when ``data`` nests deeper than ``max_depth`` or a key or string holds
    an unpaired UTF-16 surrogate (JSON's ``\\ud800`` escapes allow them; tokenizers reject them).
    Iterative, so nothing recurses on client input."""
    if isinstance(data, str) and not _unicode(data):
        _bad_string(())
    stack: list[tuple[Any, int, tuple]] = [(data, 1, ())] if isinstance(data, (dict, list)) else []
    while stack:
        node, depth, path = stack.pop()
        if depth > max_depth:
            raise APIError(400, f"{_dotted(path)}: JSON nested deeper than {max_depth} levels", "invalid_json",
                           _dotted(path))
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            if isinstance(key, str) and not _unicode(key):
                _bad_string(path + ("<key>",))
            if isinstance(value, str):
                if not _unicode(value):
                    _bad_string(path + (key,))
            elif isinstance(value, (dict, list)):
                stack.append((value, depth + 1, path + (key,)))


def _unicode(text: str) -> bool:
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _dotted(path: tuple) -> str:
    text = ".".join(str(p) for p in path)
    return text if len(text) <= 120 else text[:60] + "..." + text[-40:]


def _bad_string(path: tuple) -> None:
    where = _dotted(path)
    raise APIError(400, f"{where + ': ' if where else ''}the string holds an unpaired UTF-16 surrogate "
                   "(\\ud800-\\udfff); send valid Unicode text", "invalid_unicode", where or None)


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
