"""Export the trained add-on (e.g. a PEFT adapter folder) on its own, and load it back.

An exported folder holds what the method's ``save`` writes (for peft methods a plain peft adapter
folder that ``peft.PeftModel.from_pretrained(base, folder)`` loads without lmforge) plus
``lmforge.json``: the method and its settings, the task head with its label names, and the base
model (its upstream hub id, the local folder the run used as a hint, the run's model settings).
:func:`load_export` and ``lmforge serve`` read it; no code here knows any method by name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lmforge.atomic import atomic_dir, atomic_write_text
from lmforge.errors import UserError
from lmforge.model.task import TaskInfo

if TYPE_CHECKING:
    from torch import nn

MANIFEST = "lmforge.json"
ECOSYSTEM_CONFIG = "adapter_config.json"  # peft's adapter config (base_model_name_or_path names the base)


def export_adapter(method: Any, model: nn.Module, out_dir: str | Path, *, task: TaskInfo | None = None,
                   base: dict | None = None) -> Path:
    """Write what ``method`` trained into ``out_dir`` with ``method.save``, plus ``lmforge.json``; return ``out_dir``.

    task: the head the model was trained with (default: read from ``model``). base: the base model
    record of :func:`lmforge.model.source.describe_base` (default: the folder ``model`` was loaded
    from). An ``adapter_config.json`` the method wrote names the base by ``base["id"]`` (the upstream
    hub id where there is one), so the folder can be shared. The folder appears whole or not at all
    (an existing one is replaced).
    """
    from lmforge.model.parts import task_of

    out_dir = Path(out_dir)
    base = base or local_base(model)
    with atomic_dir(out_dir) as tmp:
        method.save(model, tmp)
        name_base(tmp, base["id"])
        write_manifest(tmp, method, task or task_of(model), base)
    return out_dir


def local_base(model: nn.Module) -> dict:
    """A base record for a model loaded straight from a folder (no run config): its path as id and hint."""
    from lmforge.model.parts import inner_model

    name = str(getattr(inner_model(model), "name_or_path", "") or "")
    path = str(Path(name).resolve()) if name and Path(name).exists() else name
    return {"id": path, "path": path, "gguf_file": None, "model": {"name": path}}


def name_base(folder: Path, base_id: str) -> None:
    """Set ``base_model_name_or_path`` in ``folder/adapter_config.json`` (when the method wrote one) to ``base_id``."""
    path = folder / ECOSYSTEM_CONFIG
    if not path.is_file():
        return
    config = json.loads(path.read_text())
    if "base_model_name_or_path" in config:
        config["base_model_name_or_path"] = base_id
        atomic_write_text(path, json.dumps(config, indent=2, sort_keys=True) + "\n")


def write_manifest(folder: Path, method: Any, task: TaskInfo, base: dict) -> None:
    labels = list(task.labels) if task.labels else None
    manifest = {"method": {"name": method.spec.name, "params": method.params.model_dump(mode="json")},
                "task": {"head": task.head, "labels": labels}, "base_model": base}
    atomic_write_text(folder / MANIFEST, json.dumps(manifest, indent=2) + "\n")


def read_manifest(folder: str | Path) -> dict | None:
    """``folder/lmforge.json`` as a dict, or None when the folder has none (or it is unreadable)."""
    path = Path(folder) / MANIFEST
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        return None


def manifest_task(manifest: dict) -> TaskInfo:
    task = manifest.get("task") or {}
    labels = tuple(task.get("labels") or ()) or None
    return TaskInfo(task.get("head") or "causal_lm", len(labels) if labels else None, labels)


def base_folder(folder: str | Path, override: str | Path | None = None) -> Path:
    """The local folder of the base model an exported (or peft adapter) ``folder`` goes over.

    In order: ``override``; the local path recorded in ``lmforge.json`` (a hint); the model recorded
    there, resolved again (a built-in name is converted again, a hub id read from the cache); for a
    folder without ``lmforge.json``, ``base_model_name_or_path`` of its adapter_config.json. Each must
    be a model folder (config.json). UserError, naming the file and ``--base``, when none is.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    base = (manifest or {}).get("base_model") or {}
    candidates = [override] if override else [base.get("path"), _ecosystem_base(folder) if manifest is None else None]
    for candidate in candidates:
        if candidate and (Path(candidate) / "config.json").is_file():
            return Path(candidate)
    if not override and base.get("model"):
        resolved = _resolve_again(base["model"])
        if resolved is not None:
            return resolved
    shown = override or base.get("id") or _ecosystem_base(folder) or ""
    raise UserError(f"the base model {str(shown)!r} is not a local model folder",
                    where=str(folder / (MANIFEST if manifest is not None else ECOSYSTEM_CONFIG)),
                    hint="pass the base folder with serve.base_model (e.g. --base PATH)")


def _ecosystem_base(folder: Path) -> str | None:
    try:
        return json.loads((folder / ECOSYSTEM_CONFIG).read_text()).get("base_model_name_or_path")
    except (OSError, json.JSONDecodeError):
        return None


def _resolve_again(model: dict) -> Path | None:
    from lmforge.config.schema import ModelConfig
    from lmforge.model.source import resolve_model

    try:
        path = resolve_model(ModelConfig.model_validate(model)).path
    except (UserError, ValueError):
        return None
    return path if (path / "config.json").is_file() else None


def load_export(folder: str | Path, dtype: str = "float32", base: str | Path | None = None) -> tuple[nn.Module, Any]:
    """(model in eval mode, tokenizer) of an export folder written by :func:`export_adapter`.

    The base (``base``, else :func:`base_folder`) is loaded as in training (``model.overrides``, the
    head and label names of the recorded task) in ``dtype``, and the recorded method's ``load`` puts
    the trained weights over it. The tokenizer comes from ``folder`` when it holds one, else from the
    base. UserError when ``folder`` has no ``lmforge.json`` or the weights do not fit the base.
    """
    from lmforge.config.schema import ModelConfig
    from lmforge.methods import build_method, get_method_spec
    from lmforge.model import load_model, load_tokenizer

    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        raise UserError(f"not an lmforge export (no {MANIFEST} inside)", where=str(folder),
                        hint="pass an export/adapter folder written by `lmforge train` or `lmforge export`")
    recorded = manifest["method"]
    method = build_method(recorded["name"], get_method_spec(recorded["name"]).params.model_validate(recorded["params"]))
    settings = (manifest.get("base_model") or {}).get("model") or {}
    model_cfg = ModelConfig(name=str(base or base_folder(folder)), dtype=dtype, overrides=settings.get("overrides") or {},
                            trust_remote_code=bool(settings.get("trust_remote_code", False)))
    task = manifest_task(manifest)
    tokenizer = _own_tokenizer(folder) or load_tokenizer(model_cfg)
    model = method.load(load_model(model_cfg, task, tokenizer=tokenizer, **method.load_kwargs()), folder, task)
    return model.eval(), tokenizer


def _own_tokenizer(folder: Path) -> Any:
    """The tokenizer saved in ``folder`` (with a pad token), or None when it holds none."""
    if not (folder / "tokenizer_config.json").is_file():
        return None
    from transformers import AutoTokenizer

    from lmforge.model.load import choose_pad_token

    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = choose_pad_token(tokenizer)
    return tokenizer
