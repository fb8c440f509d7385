"""Freeze (feature extraction): the base stays frozen; the task head and the last N blocks train.

What is the "head" is found generically, never by architecture name:
- parameters outside the backbone (``model.base_model``) that are not tied to a backbone
  parameter (a classification ``classifier`` / ``score``; an untied causal-LM ``lm_head``);
- parameters missing from the base checkpoint (freshly initialised, so they must train).
The transformer blocks are the largest ``nn.ModuleList`` whose children share one type.

``head: pooled`` replaces the model's head with pooling + a small MLP on its backbone
(:mod:`lmforge.methods.freeze.pooled`); it saves the same two files, and its manifest also records
the head's shape and labels.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from lmforge.atomic import atomic_write_text
from lmforge.errors import UserError
from lmforge.methods.base import MethodBase
from lmforge.methods.freeze.config import FreezeParams
from lmforge.methods.freeze.pooled import FeatureCache, PooledForSequenceClassification
from lmforge.model.task import TaskInfo

WEIGHTS = "freeze_weights.safetensors"
MANIFEST = "freeze_manifest.json"


class FreezeMethod(MethodBase):
    """Trains the head (+ ``params.last_layers`` top blocks); saves only those tensors."""

    params: FreezeParams

    def apply(self, model: nn.Module, task: TaskInfo) -> nn.Module:
        """Freeze everything, then unfreeze :func:`trainable_names`; returns ``model`` itself
        (``head: pooled``: a :class:`PooledForSequenceClassification` over ``model``'s backbone)."""
        if self.params.head == "pooled":
            return apply_pooled(model, task, self.params)
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
        if isinstance(model, PooledForSequenceClassification):
            manifest["pooled_head"] = describe_pooled(model)
        atomic_write_text(out_dir / MANIFEST, json.dumps(manifest, indent=2) + "\n")

    def load(self, base: nn.Module, in_dir: Path, task: TaskInfo) -> nn.Module:
        """Copy the saved tensors over a freshly loaded ``base``; every saved name must exist."""
        in_dir = Path(in_dir)
        manifest = json.loads((in_dir / MANIFEST).read_text())
        state = load_file(str(in_dir / WEIGHTS))
        if "pooled_head" in manifest:
            base = apply_pooled(base, task, FreezeParams.model_validate(manifest["params"]))
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
        if isinstance(base, PooledForSequenceClassification):
            base.cache = None  # loaded for inference: no feature cache growing with traffic
        return base.eval()

    def fit(self, model: nn.Module, train_features, collate, *, seed: int) -> dict | None:
        """Solve the trainable parameters directly, in place of the training loop, where this method can:
        ``head: pooled`` with a linear head on a frozen encoder (:attr:`FreezeParams.solves_head`).
        Returns a JSON-able summary (C, cross-validation scores, examples, seconds), or None: train
        with the loop. ``train_features`` / ``collate``: the objective's encoded training examples and
        batch builder (batches carry ``labels``); ``seed``: the run seed (cross-validation folds)."""
        if not (self.params.solves_head and isinstance(model, PooledForSequenceClassification)):
            return None
        return solve_pooled_head(model, train_features, collate, self.params, seed)

    def merge(self, model: nn.Module) -> nn.Module:
        """The trained tensors live in the model itself: nothing to fold in (``head: pooled``:
        a UserError, no transformers architecture holds a pooled MLP head)."""
        if isinstance(model, PooledForSequenceClassification):
            raise UserError("method.head: pooled cannot be merged into a plain transformers model",
                            where="export.merged", hint="use the exported head folder (export/adapter)")
        return model


def trainable_names(model: nn.Module, task: TaskInfo, params: FreezeParams) -> set[str]:
    """Names of the parameters freeze trains: head (see module doc) + the last N blocks."""
    names: set[str] = set()
    if params.train_head or task.head == "sequence_classification":
        names |= head_names(model)
    return names | top_block_names(model, params.last_layers)


def top_block_names(model: nn.Module, last_layers: int) -> set[str]:
    """Parameter names of the top ``last_layers`` transformer blocks of ``model`` (none for 0)."""
    if not last_layers:
        return set()
    prefix, blocks = transformer_blocks(model)
    if last_layers > len(blocks):
        raise UserError(
            f"method.last_layers is {last_layers} but the model has {len(blocks)} layers",
            where="method.last_layers",
            hint=f"use a value from 0 to {len(blocks)}",
        )
    names: set[str] = set()
    for index in range(len(blocks) - last_layers, len(blocks)):
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


def apply_pooled(model: nn.Module, task: TaskInfo, params: FreezeParams) -> PooledForSequenceClassification:
    """``model``'s backbone (``model.base_model``; its own head is dropped) frozen, + the last
    ``params.last_layers`` blocks trainable, under a new pooling + MLP head for ``task.num_labels``."""
    if task.head != "sequence_classification":
        raise UserError("method.head: pooled trains a classification head; this run is not classification",
                        where="method.head", hint="use classification data, or method.head: auto")
    if getattr(task, "tasks", None):
        raise UserError("method.head: pooled trains one classification head; this run has several tasks",
                        where="method.head", hint="use method.head: auto for multi-task classification")
    encoder = getattr(model, "base_model", model)
    for param in model.parameters():
        param.requires_grad_(False)
    for name in top_block_names(encoder, params.last_layers):
        encoder.get_parameter(name).requires_grad_(True)
    cache = FeatureCache(params.cache_limit) if params.cache_features else None
    pooled = PooledForSequenceClassification(
        encoder, model.config, num_labels=int(task.num_labels or model.config.num_labels), pooling=params.pooling,
        head_hidden=params.head_hidden, dropout=params.head_dropout, cache=cache)
    pooled.name_or_path = getattr(model, "name_or_path", "")
    return pooled


def solve_pooled_head(model: PooledForSequenceClassification, train_features, collate, params: FreezeParams,
                      seed: int, batch_size: int = 64) -> dict:
    """Pooled features of every training example (one encoder pass; through the feature cache when it
    is on), then :func:`lmforge.methods.freeze.fit.fit_logistic` copied into the linear head."""
    import time

    from lmforge.methods.freeze.fit import fit_logistic

    start = time.perf_counter()
    device = next(model.head.parameters()).device
    xs, ys = [], []
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for at in range(0, len(train_features), batch_size):
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v
                     for k, v in collate([train_features[i] for i in range(at, min(at + batch_size, len(train_features)))]).items()}
            mask = batch.get("attention_mask", torch.ones_like(batch["input_ids"]))
            xs.append(model.features(batch["input_ids"], mask, batch.get("token_type_ids")).float())
            ys.append(batch["labels"])
    model.train(was_training)
    linear = model.head[-1]
    solved = fit_logistic(torch.cat(xs), torch.cat(ys), linear.out_features, c=params.c, folds=params.cv_folds, seed=seed)
    with torch.no_grad():
        linear.weight.copy_(solved.weight.to(linear.weight))
        linear.bias.copy_(solved.bias.to(linear.bias))
    return {"fit": "lbfgs", "examples": len(train_features), **solved.summary(),
            "seconds": round(time.perf_counter() - start, 3)}


def describe_pooled(model: PooledForSequenceClassification) -> dict:
    """The head's shape, labels and base for the manifest (JSON-able)."""
    config = model.config
    return {"pooling": model.pooling, "hidden_size": int(config.hidden_size),
            "num_labels": int(model.head[-1].out_features),
            "id2label": {str(k): v for k, v in (getattr(config, "id2label", None) or {}).items()},
            "base_model": str(getattr(model, "name_or_path", "") or getattr(config, "_name_or_path", ""))}
