"""Server config for ``lmforge serve``: bind address, API keys, limits, adapters, logs, drift window.

Torch-free pydantic (strict, frozen), like the run config. Paths are plain strings; the server
resolves them (see :func:`lmforge.serve.run_server`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lmforge.errors import UserError

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._:-]{0,127}$")


def adapter_name_problem(name: object) -> str | None:
    """Why ``name`` cannot name an adapter, or None when it can.

    A name is a name, never a path: letters, digits and ``_ . : -``, at most 128 characters, not
    starting with ``.`` or ``-``, no ``..``, no ``/`` or ``\\``. Used for ``serve.adapters`` keys
    and for ``POST /admin/adapters`` alike.
    """
    if not isinstance(name, str) or not name:
        return "an adapter name must be a non-empty string"
    if ".." in name or not _NAME.match(name):
        return ("not an adapter name: use letters, digits and _ . : - (at most 128 characters, no path "
                "separators, no '..', not starting with '.' or '-')")
    return None


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LimitsConfig(_Section):
    """Per-request and server-wide limits; each breach is answered with an OpenAI-style error."""

    max_body_bytes: int = Field(default=1_000_000, ge=1, description="413 above this.")
    max_prompt_tokens: int = Field(default=2048, ge=1, description="400 above this.")
    max_tokens: int = Field(default=512, ge=1, description="Largest max_tokens a request may ask.")
    max_concurrent: int = Field(default=16, ge=1, description="Requests served at once; more wait in the queue.")
    max_queue: int = Field(
        default=256, ge=0, description="Requests waiting for a turn; past this 503 with Retry-After."
    )
    request_timeout_s: float = Field(default=120.0, gt=0, description="504 past this (waiting included).")
    max_batch_size: int = Field(default=8, ge=1, description="Requests grouped in one generate batch.")
    batch_wait_ms: float = Field(default=5.0, ge=0, description="Wait for more requests to batch.")


class LogConfig(_Section):
    """Structured JSON request logs (one line per request, logger ``lmforge.serve.access``)."""

    enabled: bool = True
    file: str | None = Field(default=None, description="Append JSON lines here; default stderr.")
    log_prompts: bool = Field(default=False, description="Include prompt/response text in logs.")
    redact: bool = Field(default=True, description="Mask personal data (e-mails, phones, cards ...) in logged text.")
    terms: dict[str, str | list[str]] = Field(
        default_factory=dict, description="Your own lists to mask in logged text as well, like data.prepare.pii.terms "
        "(NAME: file with one term per line, or [terms]); default when serving a run folder: the run's "
        "data.prepare.pii.terms.")
    terms_match_case: bool = Field(default=False, description="Match log.terms case-sensitively.")


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
    dtype: str = Field(default="auto", pattern="^(auto|float32|bfloat16|float16|int8)$", description=(
        "Weights' dtype. auto: bfloat16 for causal LMs on CPUs with native bf16 (AMX / AVX512-BF16), "
        "float32 elsewhere and for encoders and classifiers. int8 (opt-in, causal LMs): weight-only int8 "
        "linear layers, the rest float32; faster decoding on CPU, slightly different numbers."))
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)

    @field_validator("adapters", mode="before")
    @classmethod
    def _adapter_paths_are_strings(cls, value: object) -> object:
        for name, path in value.items() if isinstance(value, dict) else ():
            if not isinstance(path, str):
                raise ValueError(f"{str(name)[:80]!r}: the value must be an adapter folder (a string); an adapter "
                                 "name has no '.' path parts (adapters.a.b=PATH nests a section)")
        return value

    @field_validator("adapters")
    @classmethod
    def _adapter_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, path in value.items():
            problem = adapter_name_problem(name)
            if problem:
                raise ValueError(f"{name[:80]!r}: {problem}")
            if not path or "\x00" in path or Path(path).is_absolute() or ".." in Path(path).parts:
                raise ValueError(f"{name}: {str(path)[:200]!r} must be a folder relative to serve.models_dir, "
                                 "without '..'")
        return value

    def resolved_api_keys(self) -> list[str]:
        """The configured keys plus those in ``api_key_env`` (comma-separated); [] = no auth.

        UserError when ``api_key_env`` names a variable that is unset or holds no key: the user asked for keys,
        and a server started without them would answer anyone who reaches it."""
        keys = list(self.api_keys)
        if self.api_key_env:
            found = [k.strip() for k in os.environ.get(self.api_key_env, "").split(",") if k.strip()]
            if not found:
                from lmforge.errors import UserError

                state = "is not set" if self.api_key_env not in os.environ else "holds no key"
                raise UserError(f"${self.api_key_env} {state}, so the server would start without API keys",
                                where="--api-key-env (serve.api_key_env)",
                                hint=f"export {self.api_key_env}=key1,key2 first, or leave --api-key-env out to "
                                     "serve without keys on 127.0.0.1")
            keys += found
        return keys


def load_serve_config(path: str | None, overrides: list[str]) -> ServeConfig:
    """Server settings from an optional YAML file plus ``KEY=VALUE`` overrides, validated strictly.

    UserError (naming the file and line, or the setting) on a missing, unreadable or invalid file
    and on any bad setting.
    """
    import yaml

    from lmforge.config.load import apply_overrides, format_validation_error

    raw: object = {}
    if path:
        p = Path(path)
        if not p.is_file():
            raise UserError("server config not found", where=str(p))
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError as exc:
            raise UserError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", where=str(p)) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{p}:{mark.line + 1}" if mark else str(p)
            raise UserError(f"invalid YAML: {getattr(exc, 'problem', None) or exc}", where=where) from None
        if not isinstance(raw, dict):
            raise UserError("the top level must be a mapping of server settings (port, limits, ...)", where=str(p))
    try:
        return ServeConfig.model_validate(apply_overrides(raw, overrides))
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, ServeConfig), where=path or "command line",
                        hint="server settings are listed in docs/serving.md") from None
