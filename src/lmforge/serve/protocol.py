"""Request bodies of the OpenAI-compatible endpoints (unknown OpenAI fields are accepted and ignored)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lmforge.serve.apierror import APIError


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class Message(_Body):
    role: str
    content: str | list[dict[str, Any]] | None = ""

    def text(self) -> str:
        """Plain text of the message (OpenAI content parts of type text are joined)."""
        if isinstance(self.content, list):
            return "".join(p.get("text", "") for p in self.content if p.get("type") == "text")
        return self.content or ""


class Sampling(_Body):
    model: str
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    seed: int | None = None
    n: int = Field(default=1, ge=1, le=1)

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: Any) -> Any:
        if isinstance(v, list) and len(v) > 4:
            raise ValueError("at most 4 stop sequences")
        return v

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else [s for s in self.stop if s]

    def wanted_tokens(self, default: int) -> int:
        return self.max_completion_tokens or self.max_tokens or default


class ChatRequest(Sampling):
    messages: list[Message] = Field(min_length=1)


class CompletionRequest(Sampling):
    prompt: str | list[str]
    echo: bool = False


class EmbeddingRequest(_Body):
    model: str
    input: str | list[str]
    encoding_format: str = "float"


class ClassifyRequest(_Body):
    model: str
    input: str | list[str]


class AdapterRequest(_Body):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")
    path: str = Field(min_length=1)


def parse_body(cls: type[BaseModel], data: Any) -> Any:
    """Validate ``data`` into ``cls``; a validation failure becomes a 400 APIError."""
    if not isinstance(data, dict):
        raise APIError(400, "request body must be a JSON object", "invalid_body")
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise APIError(400, f"{loc}: {first['msg']}", "invalid_request", param=loc or None) from None
