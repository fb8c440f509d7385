"""The served model: one base (causal LM, encoder or classifier) plus named PEFT adapters.

An lmforge export whose method is not a peft adapter (``lmforge.json`` beside weights peft cannot
load: bottleneck adapters, freeze tensors, a pooled head, any future method) is served as one
model: :func:`lmforge.export.load_export` loads its recorded base and lets the recorded method put
the trained weights over it. Nothing here knows a method by name.

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
from lmforge.export.adapter import base_folder, manifest_task, read_manifest
from lmforge.serve.apierror import APIError


@dataclass(frozen=True)
class ServeTarget:
    """base: HF model folder; adapters: name -> PEFT adapter folder; models_dir: adapter jail;
    export: an lmforge export folder loaded over the base by its own method (served as ``name``)."""

    base: Path
    name: str
    models_dir: Path
    adapters: dict[str, Path] = field(default_factory=dict)
    export: Path | None = None


def is_peft_adapter(folder: Path) -> bool:
    """True when ``folder/adapter_config.json`` is a peft adapter config (it names its ``peft_type``)."""
    path = Path(folder) / "adapter_config.json"
    try:
        return _is_file(path) and "peft_type" in json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False


def is_export(folder: Path) -> bool:
    """True when ``folder`` is an lmforge export that only lmforge loads (``lmforge.json``, not peft)."""
    return read_manifest(folder) is not None and not is_peft_adapter(folder)


def resolve_target(target: Path | str, cfg) -> ServeTarget:
    """Accept a run folder (export/merged or export/adapter), an HF model folder, or an adapter folder.

    A run folder prefers export/merged/; with only export/adapter/ a PEFT adapter is served over its
    base (the local folder recorded in lmforge.json, or its adapter_config.json's, or
    ``cfg.base_model``) under the run folder's name, and any other lmforge export is loaded over its
    base by its method and served as one model. Extra PEFT adapters come from ``cfg.adapters`` (paths
    relative to ``models_dir``, default the target folder); UserError when combined with an export
    that is not a PEFT adapter.
    """
    target = Path(target).resolve()
    name = cfg.model_name or target.name
    adapters: dict[str, Path] = {}
    export: Path | None = None
    if (target / "export" / "multitask" / "multitask.json").is_file():
        raise UserError("this run trained one classification head per task (multi-task); lmforge serve does not "
                        "serve multi-head classifiers yet", where=str(target / "export" / "multitask"),
                        hint="load it in Python with lmforge.model.multihead.load_multihead, or train one task per run to serve it")
    if (target / "export").is_dir():
        merged, adapter = target / "export" / "merged", target / "export" / "adapter"
        if (merged / "config.json").is_file():
            base = merged
        elif is_peft_adapter(adapter):
            base = base_folder(adapter, cfg.base_model)
            adapters[name] = adapter
            name = cfg.model_name or "base"
        elif is_export(adapter):
            base, export = base_folder(adapter, cfg.base_model), adapter
        else:
            raise UserError("the run folder has no export/merged or export/adapter", where=str(target),
                            hint="run `lmforge export RUN` first")
        models_dir = target / "export"
    elif is_peft_adapter(target):
        base = base_folder(target, cfg.base_model)
        adapters[target.name] = target
        name, models_dir = cfg.model_name or "base", target.parent
    elif is_export(target):
        base, export, models_dir = base_folder(target, cfg.base_model), target, target.parent
    elif (target / "config.json").is_file():
        base, models_dir = target, target
    else:
        raise UserError("not a model folder, adapter folder or run folder", where=str(target),
                        hint="serve a run folder, an exported model folder or a PEFT adapter folder")
    models_dir = Path(cfg.models_dir).resolve() if cfg.models_dir else models_dir
    if export is not None and cfg.adapters:
        raise UserError(f"this export (method '{read_manifest(export)['method']['name']}') is not a PEFT adapter and "
                        "cannot be served with extra PEFT adapters",
                        where="serve.adapters", hint="serve the PEFT adapters over the plain base model instead")
    for key, rel in cfg.adapters.items():
        adapters[key] = configured_adapter(models_dir, key, rel)
    return ServeTarget(base=base, name=name, models_dir=models_dir, adapters=adapters, export=export)


def jail_path(models_dir: Path, rel: str) -> Path:
    """``models_dir / rel`` resolved; APIError 403 if it escapes models_dir (.., absolute, symlink),
    400 if the path cannot be looked at (too long, a loop)."""
    if Path(rel).is_absolute() or "\x00" in rel:
        raise APIError(403, "adapter paths must be relative to the models directory", "path_forbidden", "path")
    try:
        path = (models_dir / rel).resolve()
        inside = path.is_relative_to(models_dir.resolve())
    except (OSError, RuntimeError) as exc:  # ENAMETOOLONG, symlink loops
        raise APIError(400, f"cannot resolve the adapter path: {exc.__class__.__name__}", "invalid_path",
                       "path") from None
    if not inside:
        raise APIError(403, "adapter path leaves the models directory", "path_forbidden", "path")
    return path


def configured_adapter(models_dir: Path, name: str, rel: str) -> Path:
    """The folder of ``serve.adapters.<name>``: inside ``models_dir`` and holding adapter_config.json.

    UserError naming the setting otherwise (the CLI exits 2, nothing is loaded)."""
    where = f"serve.adapters.{name}"
    try:
        path = jail_path(models_dir, rel)
    except APIError as exc:
        raise UserError(f"{rel!r}: {exc.message}", where=where,
                        hint=f"give a folder inside {models_dir} (serve.models_dir), relative to it") from None
    if not _is_file(path / "adapter_config.json"):
        raise UserError(f"{rel!r} resolves to {path}, which has no adapter_config.json", where=where,
                        hint="point it at a PEFT adapter folder (export/adapter of a LoRA run)")
    return path


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name too long for the file system is simply not a file
        return False


def model_kind(base: Path) -> str:
    """"causal", "classifier" or "encoder", from the architectures in config.json."""
    archs = json.loads((base / "config.json").read_text()).get("architectures") or []
    if any(a.endswith("ForCausalLM") for a in archs):
        return "causal"
    if any(a.endswith("ForSequenceClassification") for a in archs):
        return "classifier"
    return "encoder"


def export_kind(folder: Path, base: Path) -> str:
    """The served kind of the export ``folder`` over ``base``: a classifier when its recorded task is one."""
    task = manifest_task(read_manifest(folder) or {})
    return "classifier" if task.head == "sequence_classification" else model_kind(base)


def serve_dtype(dtype: str, kind: str) -> str:
    """The weights' dtype for ``serve.dtype``: ``auto`` is bfloat16 for a causal LM where bf16 matmuls are
    native on this CPU (AMX / AVX512-BF16: half the memory and the bytes a decode step reads; on an AMX
    Xeon 8 clients got more tokens/s than with fp32 weights and one stream ~6% fewer at 135M parameters,
    benchmarks/RESULTS.md) and float32 elsewhere (emulated bf16 is slower than fp32) and for encoders and
    classifiers (embeddings and scores stay those of the fp32 model)."""
    if dtype != "auto":
        return dtype
    import torch

    from lmforge.model.decode import native_bf16

    return "bfloat16" if kind == "causal" and native_bf16(torch.device("cpu")) else "float32"


class ModelStore:
    """Holds model, tokenizer and adapters. ``kind`` is "causal", "classifier" or "encoder"."""

    def __init__(self, target: ServeTarget, dtype: str = "auto"):
        self.target, self.name = target, target.name
        self.kind = export_kind(target.export, target.base) if target.export else model_kind(target.base)
        dtype = serve_dtype(dtype, self.kind)
        self.int8 = dtype == "int8"
        if self.int8:
            if self.kind != "causal":
                raise UserError(f"int8 quantizes a causal LM's linear layers for decoding; this model is "
                                f"{'a classifier' if self.kind == 'classifier' else 'an encoder'}",
                                where="serve.dtype", hint="use serve.dtype auto or float32 for it")
            if target.adapters:
                raise UserError("int8 cannot serve PEFT adapters over the quantized base",
                                where="serve.dtype", hint="serve the merged export (export/merged, `lmforge export "
                                "RUN`), or use serve.dtype auto")
            dtype = "float32"  # embeddings, norms, attention; the linear layers become int8 below
        self.dtype = dtype
        self.model, self.tokenizer = self._load()
        # a model served as loaded (no PEFT adapters over it, not an export its method rebuilt) is the server's own
        # copy to reshape for speed, same math up to rounding: q/k/v and gate/up fused into one matmul each
        # (lmforge.serve.linears), then its linear layers int8 (serve.dtype int8, causal LMs) or packed once for
        # oneDNN (lmforge.serve.packed; encoders and classifiers too: MiniLM on 32 questions 1.61x faster on the Zen 5
        # EPYC, benchmarks/encode_packed.py). An adapter added at run time reloads the plain model first (PEFT wraps
        # nn.Linear)
        self.reshaped, self.layout = False, f"{dtype} weights"
        if self.int8:
            from lmforge.serve.linears import fuse_projections
            from lmforge.serve.quantize import quantize_linears_int8

            fuse_projections(self.model)
            quantize_linears_int8(self.model)
            self.layout = "int8 weight-only linear layers, float32 elsewhere"
        elif target.export is None and not target.adapters:
            self.reshaped = self._reshape()
        self.adapters: dict[str, Path] = {}
        self.lock = threading.RLock()
        for name, path in target.adapters.items():
            try:
                self.add_adapter(name, path)
            except APIError as exc:  # at start-up a bad adapter is the user's setting, not a request
                raise UserError(f"adapter {name!r}: {exc.message}", where=str(path)) from None

    def _load(self):
        """(model, tokenizer) of the target in ``self.dtype``, in eval mode."""
        import torch
        import transformers as tf

        target = self.target
        if target.export is not None:
            from lmforge.export import load_export

            return load_export(target.export, self.dtype, base=target.base)
        auto = {"causal": tf.AutoModelForCausalLM, "classifier": tf.AutoModelForSequenceClassification,
                "encoder": tf.AutoModel}[self.kind]
        tokenizer = tf.AutoTokenizer.from_pretrained(target.base)
        return auto.from_pretrained(target.base, dtype=getattr(torch, self.dtype)).eval(), tokenizer

    def _reshape(self) -> bool:
        """Fuse and pack the model's linear layers on CPU; True when any layer changed."""
        from lmforge.serve.linears import fuse_projections
        from lmforge.serve.packed import pack_linears, widen_linears

        if next(self.model.parameters()).device.type != "cpu":
            return False
        fused = fuse_projections(self.model)
        packed = pack_linears(self.model)
        widened = widen_linears(self.model)
        self.layout += ((", q/k/v and gate/up fused" if fused else "") + (", packed for oneDNN" if packed else "")
                        + (", bf16 widened to float32 for many rows" if widened else ""))
        return packed + fused + widened > 0

    def names(self) -> list[str]:
        """Model ids a request may name: the base first, then adapters."""
        return [self.name, *self.adapters]

    def add_adapter(self, name: str, path: Path) -> None:
        """Load the PEFT adapter at ``path`` (already jailed) as ``name``; 400/409 on bad input.

        lmforge exports that are not PEFT adapters are refused with 400, and so is any PEFT adapter
        when the served model itself is such an export."""
        from peft import PeftModel

        if name == self.name or name in self.adapters:
            raise APIError(409, f"model {name!r} already exists", "model_exists", "name")
        if not _is_file(path / "adapter_config.json"):
            raise APIError(400, "no adapter_config.json in that folder", "not_an_adapter", "path")
        if not is_peft_adapter(path):
            raise APIError(400, "only PEFT adapters can be added at run time; serve an lmforge export of another "
                           "method with `lmforge serve RUN`", "adapter_not_peft")
        if self.int8:
            raise APIError(400, "this server quantized its model to int8 (serve.dtype int8); PEFT adapters cannot be "
                           "added to it", "adapter_not_supported")
        if self.target.export is not None:
            raise APIError(400, "this model is an lmforge export that is not a PEFT adapter; PEFT adapters "
                           "cannot be added to it", "adapter_not_supported")
        with self.lock:
            if self.reshaped:  # PEFT wraps plain nn.Linear layers: back to the model as loaded, once
                self.model, self.reshaped, self.layout = self._load()[0], False, f"{self.dtype} weights"
            try:
                if isinstance(self.model, PeftModel):
                    self.model.load_adapter(str(path), adapter_name=name)
                else:
                    self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=name)
            except Exception as exc:  # any failure to read a folder the client named is a bad request
                self._forget(name)
                raise APIError(400, f"cannot load adapter: {type(exc).__name__}: {str(exc)[:300]}",
                               "adapter_load_failed", "path") from None
            self.model.eval()
            self.adapters[name] = path

    def _forget(self, name: str) -> None:
        """Drop what a failed load of adapter ``name`` registered (peft may have added its config)."""
        if name in getattr(self.model, "peft_config", {}):
            try:
                self.model.delete_adapter(name)
            except Exception:  # nothing registered deeply enough to remove; the name stays unusable
                pass

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
            raise APIError(404, f"the model {name[:100]!r} does not exist", "model_not_found", "model")
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
