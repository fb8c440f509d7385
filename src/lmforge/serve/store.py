"""The served model: one base (causal LM, encoder or classifier) plus named PEFT adapters.

``resolve_target`` turns what the user passed to ``lmforge serve`` into a :class:`ServeTarget`;
``ModelStore`` loads it and adds/removes adapters at run time, only from inside ``models_dir``.
All model use goes through ``store.lock`` (adapter switching mutates the model).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path

from lmforge.errors import UserError
from lmforge.serve.apierror import APIError


@dataclass(frozen=True)
class ServeTarget:
    """base: HF model folder; adapters: name -> PEFT adapter folder; models_dir: adapter jail."""

    base: Path
    name: str
    models_dir: Path
    adapters: dict[str, Path] = field(default_factory=dict)


def _adapter_base(adapter_dir: Path, override: str | None) -> Path:
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    base = Path(override or cfg.get("base_model_name_or_path") or "")
    if not (base / "config.json").is_file():
        raise UserError(
            f"the adapter's base model {str(base)!r} is not a local model folder",
            where=str(adapter_dir / "adapter_config.json"),
            hint="pass the base folder with serve.base_model (e.g. --base PATH)",
        )
    return base


def resolve_target(target: Path | str, cfg) -> ServeTarget:
    """Accept a run folder (export/merged or export/adapter), an HF model folder, or an adapter folder.

    A run folder prefers export/merged/; with only export/adapter/ the adapter is served over the
    base named in its adapter_config.json, under the run folder's name. Extra adapters come from
    ``cfg.adapters`` (paths relative to ``models_dir``, default the target folder).
    """
    target = Path(target).resolve()
    name = cfg.model_name or target.name
    adapters: dict[str, Path] = {}
    if (target / "export").is_dir():
        merged, adapter = target / "export" / "merged", target / "export" / "adapter"
        if (merged / "config.json").is_file():
            base = merged
        elif (adapter / "adapter_config.json").is_file():
            base = _adapter_base(adapter, cfg.base_model)
            adapters[name] = adapter
            name = cfg.model_name or "base"
        else:
            raise UserError("the run folder has no export/merged or export/adapter", where=str(target),
                            hint="run `lmforge export RUN` first")
        models_dir = target / "export"
    elif (target / "adapter_config.json").is_file():
        base = _adapter_base(target, cfg.base_model)
        adapters[target.name] = target
        name, models_dir = cfg.model_name or "base", target.parent
    elif (target / "config.json").is_file():
        base, models_dir = target, target
    else:
        raise UserError("not a model folder, adapter folder or run folder", where=str(target),
                        hint="serve a run folder, an exported model folder or a PEFT adapter folder")
    models_dir = Path(cfg.models_dir).resolve() if cfg.models_dir else models_dir
    for key, rel in cfg.adapters.items():
        adapters[key] = jail_path(models_dir, rel)
    return ServeTarget(base=base, name=name, models_dir=models_dir, adapters=adapters)


def jail_path(models_dir: Path, rel: str) -> Path:
    """``models_dir / rel`` resolved; APIError 403 if it escapes models_dir (.., absolute, symlink)."""
    if Path(rel).is_absolute() or "\x00" in rel:
        raise APIError(403, "adapter paths must be relative to the models directory", "path_forbidden")
    path = (models_dir / rel).resolve()
    if not path.is_relative_to(models_dir.resolve()):
        raise APIError(403, "adapter path leaves the models directory", "path_forbidden")
    return path


def model_kind(base: Path) -> str:
    """"causal", "classifier" or "encoder", from the architectures in config.json."""
    archs = json.loads((base / "config.json").read_text()).get("architectures") or []
    if any(a.endswith("ForCausalLM") for a in archs):
        return "causal"
    if any(a.endswith("ForSequenceClassification") for a in archs):
        return "classifier"
    return "encoder"


class ModelStore:
    """Holds model, tokenizer and adapters. ``kind`` is "causal", "classifier" or "encoder"."""

    def __init__(self, target: ServeTarget, dtype: str = "float32"):
        import torch
        import transformers as tf

        self.target, self.name = target, target.name
        self.kind = model_kind(target.base)
        auto = {"causal": tf.AutoModelForCausalLM, "classifier": tf.AutoModelForSequenceClassification,
                "encoder": tf.AutoModel}[self.kind]
        self.tokenizer = tf.AutoTokenizer.from_pretrained(target.base)
        self.model = auto.from_pretrained(target.base, dtype=getattr(torch, dtype)).eval()
        self.adapters: dict[str, Path] = {}
        self.lock = threading.RLock()
        for name, path in target.adapters.items():
            self.add_adapter(name, path)

    def names(self) -> list[str]:
        """Model ids a request may name: the base first, then adapters."""
        return [self.name, *self.adapters]

    def add_adapter(self, name: str, path: Path) -> None:
        """Load the PEFT adapter at ``path`` (already jailed) as ``name``; 400/409 on bad input."""
        from peft import PeftModel

        if name == self.name or name in self.adapters:
            raise APIError(409, f"model {name!r} already exists", "model_exists")
        if not (path / "adapter_config.json").is_file():
            raise APIError(400, "no adapter_config.json in that folder", "not_an_adapter")
        with self.lock:
            try:
                if isinstance(self.model, PeftModel):
                    self.model.load_adapter(str(path), adapter_name=name)
                else:
                    self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=name)
            except (ValueError, KeyError, RuntimeError, OSError) as exc:
                raise APIError(400, f"cannot load adapter: {exc}", "adapter_load_failed") from None
            self.model.eval()
            self.adapters[name] = path

    def remove_adapter(self, name: str) -> None:
        """Unload adapter ``name``; 404 if unknown."""
        if name not in self.adapters:
            raise APIError(404, f"no adapter named {name!r}", "model_not_found")
        with self.lock:
            self.model.delete_adapter(name)
            del self.adapters[name]

    def check_model(self, name: str) -> str:
        """Return ``name`` if served, else APIError 404."""
        if name not in self.names():
            raise APIError(404, f"the model {name!r} does not exist", "model_not_found", "model")
        return name

    def activate(self, name: str):
        """Context manager: run the model as ``name`` (adapter on, or all adapters off for the base).

        Callers hold ``self.lock``. Returns a context manager.
        """
        import contextlib

        if name in self.adapters:
            self.model.set_adapter(name)
            return contextlib.nullcontext()
        if self.adapters:
            return self.model.disable_adapter()
        return contextlib.nullcontext()
