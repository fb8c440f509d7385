"""Request bodies of the OpenAI-compatible endpoints, validated strictly: a bad field is a 400 naming it.

Types are strict (``"max_tokens": "5"`` or ``"stream": "yes"`` are refused, not guessed). Unknown
fields are accepted and ignored, as OpenAI clients send many optional ones; but asking for a
feature this server does not implement (``tools: [...]``, ``suffix``, ``best_of: 3`` ...)
is a 400 naming the field instead of an answer that silently lacks it (see ``UNSUPPORTED``).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from lmforge.config.serve import adapter_name_problem
from lmforge.serve.apierror import APIError

MAX_INPUTS = 2048  # texts per embeddings / classify request (OpenAI's own limit)
MAX_PROMPTS = 128  # prompts per /v1/completions request (each becomes one generation)
MAX_CHOICES = 16  # answers per prompt (`n`); prompts x n is at most MAX_PROMPTS generations per request
MAX_LOGIT_BIAS = 1024  # token ids biased per request
MAX_TOP_LOGPROBS = 20  # alternatives per token (OpenAI's chat limit; its legacy completions stop at 5)

Texts = Annotated[list[str], Field(min_length=1, max_length=MAX_INPUTS)]
TokenId = Annotated[int, Field(ge=0, le=2**31 - 1)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)
    # field -> the values that mean "off"; any other value is an unsupported feature (400)
    UNSUPPORTED: ClassVar[dict[str, tuple]] = {}


class ContentPart(_Body):
    """One part of a message's content list; only ``{"type": "text", "text": str}`` is read."""

    type: str
    text: str | None = None

    @model_validator(mode="after")
    def _text_only(self) -> ContentPart:
        if self.type != "text":
            raise ValueError(f"content part type {self.type[:40]!r} is not supported: this server reads text only")
        if self.text is None:
            raise ValueError("a text part needs a string 'text'")
        return self


class Message(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = ""

    def text(self) -> str:
        """Plain text of the message (the text parts of a content list, joined)."""
        if isinstance(self.content, list):
            return "".join(p.text or "" for p in self.content)
        return self.content or ""


class Sampling(_Body):
    model: str | None = Field(default=None, min_length=1)  # left out: the served base model (as vLLM does)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    seed: int | None = Field(default=None, ge=-(2**63), le=2**64 - 1)  # what torch.Generator accepts
    n: int = Field(default=1, ge=1, le=MAX_CHOICES)  # answers per prompt (each sampled on its own)
    presence_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    frequency_penalty: float = Field(default=0.0, ge=-2.0, le=2.0)
    repetition_penalty: float = Field(default=1.0, gt=0.0, le=10.0)  # not OpenAI's: vLLM's and transformers'
    logit_bias: dict[str, Annotated[float, Field(ge=-100.0, le=100.0)]] | None = Field(
        default=None, max_length=MAX_LOGIT_BIAS)
    UNSUPPORTED: ClassVar[dict[str, tuple]] = {"best_of": (None, 1)}

    @field_validator("logit_bias")
    @classmethod
    def _token_ids(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for key in value or {}:
            if not (key.isascii() and key.isdigit()) or len(key) > 12:
                raise ValueError(f"keys are token ids (non-negative integers as strings), not {key[:40]!r}")
        return value

    def bias(self) -> tuple[tuple[int, float], ...]:
        """``logit_bias`` as (token id, bias) pairs in id order, one per id (``"7"`` and ``"07"``: the last one)."""
        return tuple(sorted({int(k): float(v) for k, v in (self.logit_bias or {}).items()}.items()))

    def top_logprobs_wanted(self) -> int | None:
        """None: no log-probabilities; k >= 0: each token's log-probability and its k likeliest alternatives."""
        return None

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else [s for s in self.stop if s]

    def wanted_tokens(self, default: int) -> int:
        return self.max_completion_tokens or self.max_tokens or default


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)
    UNSUPPORTED: ClassVar[dict[str, tuple]] = {
        **Sampling.UNSUPPORTED, "tools": (None, []), "tool_choice": (None, "none", "auto"), "functions": (None, []),
        "function_call": (None, "none", "auto"), "response_format": (None, {"type": "text"}), "audio": (None,),
    }

    @field_validator("top_logprobs")
    @classmethod
    def _top_needs_logprobs(cls, value: int | None, info: ValidationInfo) -> int | None:
        if value and not info.data.get("logprobs"):  # logprobs is declared first, so it is validated already
            raise ValueError("top_logprobs needs logprobs: true")
        return value

    def top_logprobs_wanted(self) -> int | None:
        return (self.top_logprobs or 0) if self.logprobs else None


class CompletionRequest(Sampling):
    # text, texts, token ids (one prompt) or lists of token ids (several), as OpenAI's legacy endpoint takes them
    prompt: (str | Annotated[list[str], Field(min_length=1, max_length=MAX_PROMPTS)]
             | Annotated[list[TokenId], Field(min_length=1)]
             | Annotated[list[Annotated[list[TokenId], Field(min_length=1)]], Field(min_length=1, max_length=MAX_PROMPTS)])
    logprobs: int | None = Field(default=None, ge=0, le=MAX_TOP_LOGPROBS)  # the legacy API's k (0: chosen tokens only)
    echo: bool = False  # the prompt comes back before each answer (with logprobs: its tokens scored too)
    UNSUPPORTED: ClassVar[dict[str, tuple]] = {**Sampling.UNSUPPORTED, "suffix": (None, "")}

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt_shape(cls, value: Any) -> Any:
        """Name what is wrong with a prompt that is none of the four shapes (the union's own errors would all
        say "should be a valid string")."""
        if not isinstance(value, list) or not value or isinstance(value[0], str):
            return value  # a string, an empty list or a list of strings: the union's messages are right
        ids = [value] if isinstance(value[0], int) and not isinstance(value[0], bool) else value
        for i, prompt in enumerate(ids):
            where = f"item {i}" if ids is value else "the token ids"
            if not isinstance(prompt, list) or not prompt:
                raise ValueError(f"{where}: a prompt is a string, token ids, or a list of either; not {_kind(prompt)}")
            bad = next((t for t in prompt if not _token_id(t)), None)
            if bad is not None:
                raise ValueError(f"{where}: token ids are integers from 0 to {2**31 - 1}, not {str(bad)[:40]!r}")
        return value

    def top_logprobs_wanted(self) -> int | None:
        return self.logprobs

    def prompts(self) -> list[str | list[int]]:
        """Each prompt: a text, or token ids."""
        if isinstance(self.prompt, str) or (self.prompt and isinstance(self.prompt[0], int)):
            return [self.prompt]
        return list(self.prompt)


class EmbeddingRequest(_Body):
    model: str | None = Field(default=None, min_length=1)  # left out: the served base model (as vLLM does)
    input: str | Texts
    encoding_format: Literal["float", "base64"] = "float"
    UNSUPPORTED: ClassVar[dict[str, tuple]] = {"dimensions": (None,)}


class ClassifyRequest(_Body):
    model: str | None = Field(default=None, min_length=1)  # left out: the served base model (as vLLM does)
    input: str | Texts


class AdapterRequest(_Body):
    name: str
    path: str = Field(min_length=1, max_length=4096)

    @field_validator("name")
    @classmethod
    def _a_name(cls, value: str) -> str:
        problem = adapter_name_problem(value)
        if problem:
            raise ValueError(problem)
        return value


def _token_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 2**31 - 1


def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string", dict: "an object", list: "a list"}
    return "an empty list" if value == [] else names.get(type(value), "null" if value is None else "a value")


def parse_body(cls: type[_Body], data: Any) -> Any:
    """Validate ``data`` into ``cls``; a failure becomes a 400 APIError whose ``param`` is the field."""
    if not isinstance(data, dict):
        raise APIError(400, "request body must be a JSON object", "invalid_body")
    for key, off in cls.UNSUPPORTED.items():
        if key in data and not any(_same(data[key], v) for v in off):
            shown = repr(data[key])[:60]
            raise APIError(400, f"{key}: {shown} is not supported by this server (leave it out)",
                           "unsupported_parameter", key)
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        field, msg = describe(exc, data)
        raise APIError(400, f"{field}: {msg}" if field else msg, "invalid_request", field or None) from None


def _same(value: Any, off: Any) -> bool:
    """``value == off`` without Python's ``0 == False`` (``best_of: True`` is not the number 1)."""
    return value == off and isinstance(value, bool) == isinstance(off, bool)


def describe(exc: ValidationError, data: dict) -> tuple[str, str]:
    """(dotted field path, message) of the most specific error: the one reaching deepest into ``data``.

    pydantic's locations carry union member tags (``str``, ``list[str]``); only keys and indexes
    present in the body are kept, so the path is the client's own field."""
    best: tuple[str, str] | None = None
    for err in exc.errors(include_url=False, include_input=False):
        path = _field_path(err["loc"], data, err["type"] == "missing")
        msg = str(err["msg"]).removeprefix("Value error, ")
        if best is None or path.count(".") > best[0].count(".") or (path and not best[0]):
            best = (path, msg)
    return best or ("", "invalid request body")


def _field_path(loc: tuple, data: Any, missing: bool) -> str:
    parts, node = [], data
    for i, part in enumerate(loc):
        if isinstance(node, dict) and isinstance(part, str) and part in node:
            parts.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            parts.append(str(part))
            node = node[part]
        elif missing and i == len(loc) - 1:
            parts.append(str(part))
    return ".".join(parts)
