"""Freeze (feature extraction): the base stays frozen; the task head and the last N blocks train.

What is the "head" is found generically, never by architecture name:
- parameters outside the backbone (``model.base_model``) that are not tied to a backbone
  parameter (a classification ``classifier`` / ``score``; an untied causal-LM ``lm_head``);
- parameters missing from the base checkpoint (freshly initialised, so they must train).
The transformer blocks are the largest ``nn.ModuleList`` whose children share one type.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from lmforge.atomic import atomic_write_text
from lmforge.errors import UserError
from lmforge.methods.freeze.config import FreezeParams
from lmforge.methods.registry import MethodSpec
from lmforge.model.task import TaskInfo

WEIGHTS = "freeze_weights.safetensors"
MANIFEST = "freeze_manifest.json"


class FreezeMethod:
    """Trains the head (+ ``params.last_layers`` top blocks); saves only those tensors."""

    def __init__(self, spec: MethodSpec, params: FreezeParams):
        self.spec = spec
        self.params = params

    def load_kwargs(self) -> dict[str, Any]:
        return {}

    def apply(self, model: nn.Module, task: TaskInfo) -> nn.Module:
        """Freeze everything, then unfreeze :func:`trainable_names`; returns ``model`` itself."""
        names = trainable_names(model, task, self.params)
        if not names:
            raise UserError(
                "method 'freeze' leaves nothing to train on this model: its output head is tied to "
                "the input embeddings and no transformer layers are unfrozen",
                where="method.last_layers",
                hint="set method.last_layers: 2 (or more), or use method lora / full",
            )
        for name, param in model.named_parameters():
            param.requires_grad_(name in names)
        return model

    def save(self, model: nn.Module, out_dir: Path) -> None:
        """Write the trainable tensors (safetensors) and a manifest naming them into ``out_dir``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        state = {n: p.detach().to("cpu").contiguous() for n, p in model.named_parameters() if p.requires_grad}
        save_file(state, str(out_dir / WEIGHTS), metadata={"format": "pt", "method": "freeze"})
        manifest = {"method": "freeze", "params": self.params.model_dump(), "tensors": sorted(state)}
        atomic_write_text(out_dir / MANIFEST, json.dumps(manifest, indent=2) + "\n")

    def load(self, base: nn.Module, in_dir: Path, task: TaskInfo) -> nn.Module:
        """Copy the saved tensors over a freshly loaded ``base``; every saved name must exist."""
        in_dir = Path(in_dir)
        manifest = json.loads((in_dir / MANIFEST).read_text())
        state = load_file(str(in_dir / WEIGHTS))
        params = dict(base.named_parameters())
        missing = [n for n in manifest["tensors"] if n not in params or n not in state]
        if missing:
            raise UserError(
                f"the saved freeze weights in '{in_dir}' do not fit this base model: {missing[:3]}",
                hint="load them over the same base model (and model.overrides) they were trained on",
            )
        with torch.no_grad():
            for name in manifest["tensors"]:
                params[name].copy_(state[name].to(params[name].dtype))
        return base.eval()

    def merge(self, model: nn.Module) -> nn.Module:
        """The trained tensors live in the model itself: nothing to fold in."""
        return model


def trainable_names(model: nn.Module, task: TaskInfo, params: FreezeParams) -> set[str]:
    """Names of the parameters freeze trains: head (see module doc) + the last N blocks."""
    names: set[str] = set()
    if params.train_head or task.head == "sequence_classification":
        names |= head_names(model)
    if params.last_layers:
        prefix, blocks = transformer_blocks(model)
        if params.last_layers > len(blocks):
            raise UserError(
                f"method.last_layers is {params.last_layers} but the model has {len(blocks)} layers",
                where="method.last_layers",
                hint=f"use a value from 0 to {len(blocks)}",
            )
        first = len(blocks) - params.last_layers
        for index in range(first, len(blocks)):
            names |= {f"{prefix}.{index}.{n}" for n, _ in blocks[index].named_parameters()}
    return names


def head_names(model: nn.Module) -> set[str]:
    """Parameters outside the backbone and not tied to it, plus any missing from the checkpoint."""
    backbone = getattr(model, "base_model", model)
    backbone_ids = {id(p) for p in backbone.parameters()} if backbone is not model else set()
    names = set()
    if backbone is not model:
        names = {n for n, p in model.named_parameters() if id(p) not in backbone_ids}
    return names | _missing_from_checkpoint(model)


def _missing_from_checkpoint(model: nn.Module) -> set[str]:
    """Parameter names absent from the safetensors checkpoint ``model`` was loaded from.

    Checkpoint keys may lack the backbone prefix (an encoder saved without a head), so a name
    counts as present with or without it. Unknown checkpoints (no local files) report nothing.
    """
    keys = _checkpoint_keys(Path(str(getattr(model, "name_or_path", "") or "")))
    if not keys:
        return set()
    prefix = getattr(model, "base_model_prefix", "") + "."
    missing = set()
    for name, _ in model.named_parameters():
        short = name[len(prefix):] if prefix != "." and name.startswith(prefix) else name
        if name not in keys and short not in keys and prefix + name not in keys:
            missing.add(name)
    return missing


def _checkpoint_keys(folder: Path) -> set[str]:
    if not folder.is_dir():
        return set()
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return set(json.loads(index.read_text())["weight_map"])
    single = folder / "model.safetensors"
    if not single.is_file():
        return set()
    from safetensors import safe_open

    with safe_open(str(single), framework="pt") as handle:
        return set(handle.keys())


def transformer_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """(qualified name, module list) of the largest ``nn.ModuleList`` of same-typed blocks."""
    best: tuple[str, nn.ModuleList] | None = None
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            if len({type(child) for child in module}) == 1 and (best is None or len(module) > len(best[1])):
                best = (name, module)
    if best is None:
        raise UserError(
            "method.last_layers: this model has no list of transformer layers to unfreeze",
            where="method.last_layers",
            hint="set method.last_layers: 0",
        )
    return best
