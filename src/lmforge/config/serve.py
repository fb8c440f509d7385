"""Server config for ``lmforge serve``: bind address, API keys, limits, adapters, logs, drift window.

Torch-free pydantic (strict, frozen), like the run config. Paths are plain strings; the server
resolves them (see :func:`lmforge.serve.run_server`).
"""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LimitsConfig(_Section):
    """Per-request and server-wide limits; each breach is answered with an OpenAI-style error."""

    max_body_bytes: int = Field(default=1_000_000, ge=1, description="413 above this.")
    max_prompt_tokens: int = Field(default=2048, ge=1, description="400 above this.")
    max_tokens: int = Field(default=512, ge=1, description="Largest max_tokens a request may ask.")
    max_concurrent: int = Field(default=16, ge=1, description="503 when this many are in flight.")
    request_timeout_s: float = Field(default=120.0, gt=0, description="504 past this.")
    max_batch_size: int = Field(default=8, ge=1, description="Requests grouped in one generate batch.")
    batch_wait_ms: float = Field(default=5.0, ge=0, description="Wait for more requests to batch.")


class LogConfig(_Section):
    """Structured JSON request logs (one line per request, logger ``lmforge.serve.access``)."""

    enabled: bool = True
    file: str | None = Field(default=None, description="Append JSON lines here; default stderr.")
    log_prompts: bool = Field(default=False, description="Include prompt/response text in logs.")
    redact: bool = Field(default=True, description="Mask e-mails/phone numbers in logged text.")


class DriftConfig(_Section):
    """Rolling traffic statistics for ``lmforge monitor``."""

    enabled: bool = True
    window_file: str | None = Field(
        default=None, description="JSONL of per-request stats; default <run>/monitor/traffic.jsonl."
    )
    window_size: int = Field(default=1000, ge=10, description="Records kept in the window file.")


class ServeConfig(_Section):
    """Everything ``lmforge serve`` needs besides the model folder."""

    host: str = Field(default="127.0.0.1", description="Loopback by default; 0.0.0.0 exposes it.")
    port: int = Field(default=8000, ge=0, le=65535)
    api_keys: list[str] = Field(default_factory=list, description="Bearer keys; empty = no auth.")
    api_key_env: str | None = Field(default=None, description="Env var holding comma-separated keys.")
    model_name: str | None = Field(default=None, description="Name of the base in /v1/models.")
    base_model: str | None = Field(
        default=None, description="Base folder for an adapter-only target (overrides adapter_config)."
    )
    models_dir: str | None = Field(
        default=None, description="Only folder adapters may be loaded from; default the target's."
    )
    adapters: dict[str, str] = Field(
        default_factory=dict, description="name -> adapter folder (relative to models_dir)."
    )
    dtype: str = Field(default="float32", pattern="^(float32|bfloat16|float16)$")
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)

    def resolved_api_keys(self) -> list[str]:
        """The configured keys plus those in ``api_key_env`` (comma-separated); [] = no auth."""
        keys = list(self.api_keys)
        if self.api_key_env:
            keys += [k.strip() for k in os.environ.get(self.api_key_env, "").split(",") if k.strip()]
        return keys
