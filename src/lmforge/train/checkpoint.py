"""Checkpoints under ``<run>/checkpoints/{last,best}``: written atomically, resumable exactly.

A checkpoint folder holds:
  model.safetensors      trainable parameters only (by ``named_parameters`` name)
  optimizer.safetensors  optimizer state tensors, keyed "<param index>.<name>"
  optimizer.json         optimizer param groups + non-tensor state values
  scheduler.json         LR scheduler state
  rng.safetensors        torch CPU (+ CUDA) RNG states; rng.json: python / numpy RNG states
  state.json             ``LoopState`` (step, epoch, position, best so far, early stopping, history)
Folders appear whole or not at all (``lmforge.atomic.atomic_dir``); a crash inside the final
swap leaves ``.last.old``, which ``find_resume_dir`` accepts, and a kill while writing leaves a
``.last.*.tmp`` folder, which a resume removes (``remove_stale_temporaries``).

Checkpoints do not depend on the number of processes: tensors are stored whole (FSDP shards are
gathered first, on every rank, and re-sharded on load) and the data position is global, so a run
saved by N processes resumes on M.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from lmforge.atomic import atomic_dir, remove_temporaries
from lmforge.errors import UserError
from lmforge.train.state import LoopState

LAST, BEST = "last", "best"


def checkpoint_dir(run_dir: str | Path, which: str) -> Path:
    return Path(run_dir) / "checkpoints" / which


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached whole CPU copies of the parameters that require grad, by name.

    FSDP-sharded (DTensor) parameters are gathered: a collective every process must call.
    """
    return {n: _whole(p) for n, p in model.named_parameters() if p.requires_grad}


def _whole(tensor: torch.Tensor) -> torch.Tensor:
    """A contiguous CPU copy of ``tensor``; DTensor shards are gathered into the full tensor."""
    tensor = tensor.detach()
    if hasattr(tensor, "full_tensor"):
        tensor = tensor.full_tensor()
    return tensor.to("cpu").contiguous().clone()


def _like(value: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``value`` (a whole tensor) laid out like ``target``: re-sharded when it is a DTensor."""
    if hasattr(target, "device_mesh"):
        from torch.distributed.tensor import distribute_tensor

        return distribute_tensor(value.to(target.dtype), target.device_mesh, target.placements)
    return value


def save_checkpoint(folder: Path, model: nn.Module, state: LoopState, optimizer=None, scheduler=None,
                    write: bool = True) -> Path:
    """Write a checkpoint folder atomically; optimizer/scheduler/RNG only when ``optimizer`` given.

    ``write=False`` (ranks other than 0): take part in gathering sharded tensors, write nothing.
    """
    weights = trainable_state(model)
    moments = _optimizer_tensors(optimizer) if optimizer is not None else None
    if not write:
        return folder
    with atomic_dir(folder) as tmp:
        save_file(weights, str(tmp / "model.safetensors"))
        if optimizer is not None:
            _save_optimizer(tmp, optimizer, moments)
            (tmp / "scheduler.json").write_text(json.dumps(scheduler.state_dict() if scheduler else {}))
            _save_rng(tmp)
        (tmp / "state.json").write_text(json.dumps(state.to_dict(), indent=1))
    return folder


def load_trainable(model: nn.Module, checkpoint: str | Path) -> nn.Module:
    """Copy the saved trainable parameters of ``checkpoint`` into ``model`` (in place).

    Raises ValueError when a saved name is not a parameter of ``model`` or a shape differs, and
    UserError naming the file when it is missing or not a safetensors file.
    """
    path = Path(checkpoint) / "model.safetensors"
    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise UserError(f"cannot read the checkpoint's weights: {exc}", where=str(path),
                        hint="the file is damaged or missing; train the run again (or resume from an intact checkpoint)") from None
    params = dict(model.named_parameters())
    missing = [n for n in tensors if n not in params]
    if missing:
        raise ValueError(f"checkpoint {checkpoint} has parameters the model lacks: {missing[:5]}")
    with torch.no_grad():
        for name, value in tensors.items():
            if params[name].shape != value.shape:
                raise ValueError(f"{name}: shape {tuple(value.shape)} in checkpoint, {tuple(params[name].shape)} in model")
            params[name].copy_(_like(value, params[name]))
    return model


# Every file a resumable checkpoint (``last``) holds; ``best`` keeps model.safetensors + state.json only.
RESUME_FILES = ("model.safetensors", "optimizer.safetensors", "optimizer.json", "scheduler.json",
                "rng.json", "rng.safetensors", "state.json")


def missing_files(folder: Path) -> list[str]:
    """The :data:`RESUME_FILES` that ``folder`` lacks (empty files count as missing)."""
    return [name for name in RESUME_FILES if not (folder / name).is_file() or (folder / name).stat().st_size == 0]


def find_resume_dir(run_dir: str | Path, say: Callable[[str], None] = print) -> Path | None:
    """The last complete checkpoint of ``run_dir``: ``last``, else the previous one a crash inside the
    final swap left as ``.last.old``; None when the run has no checkpoint yet.

    Raises UserError naming the missing files when checkpoints exist but none is complete.
    """
    last = checkpoint_dir(run_dir, LAST)
    problems = []
    for candidate in (last, last.with_name(f".{LAST}.old")):
        if not candidate.is_dir():
            continue
        missing = missing_files(candidate)
        if not missing:
            if problems:
                say(f"resume: {problems[0]}; falling back to the previous complete checkpoint {candidate}")
            return candidate
        problems.append(f"{candidate} lacks {', '.join(missing)}")
    if problems:
        folder = Path(run_dir) / "checkpoints"
        raise UserError(f"no complete checkpoint to resume from: {'; '.join(problems)}", where=str(folder),
                        hint=f"to start this run over, remove {folder} and train without --resume "
                             "(or train into a new run.output_dir)")
    return None


def remove_stale_temporaries(run_dir: str | Path) -> list[Path]:
    """Delete what a killed checkpoint write left in ``<run_dir>/checkpoints`` (``.last.*.tmp``,
    ``.best.*.tmp``; ``.last.old`` once ``last`` is complete). Returns what was removed."""
    folder = Path(run_dir) / "checkpoints"
    removed = remove_temporaries(folder) if folder.is_dir() else []
    old = folder / f".{LAST}.old"
    if old.is_dir() and not missing_files(folder / LAST):
        shutil.rmtree(old, ignore_errors=True)
        removed.append(old)
    return removed


def load_checkpoint(folder: Path, model: nn.Module, optimizer, scheduler) -> LoopState:
    """Restore weights, optimizer, scheduler and RNG states in place; return the loop state.

    UserError naming the checkpoint when one of its files cannot be read.
    """
    try:
        load_trainable(model, folder)
        _load_optimizer(folder, optimizer)
        scheduler.load_state_dict(json.loads((folder / "scheduler.json").read_text()))
        _load_rng(folder)
        return LoopState.from_dict(json.loads((folder / "state.json").read_text()))
    except (OSError, ValueError, KeyError, TypeError, IndexError, SafetensorError) as exc:
        raise UserError(f"cannot resume from this checkpoint: {type(exc).__name__}: {exc}", where=str(folder),
                        hint="a checkpoint written by another lmforge version or another config does not resume; "
                             "train into a new run.output_dir") from None


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Whole CPU copies of the optimizer's tensor state, keyed "<param index>.<name>" (collective
    under FSDP: every process calls it). Nested state dicts (bitsandbytes 8-bit optimizers keep
    theirs under one key) flatten to "<param index>.<name>/<inner name>"."""
    return {f"{index}.{key}": _whole(value) for index, entry in optimizer.state_dict()["state"].items()
            for key, value in _flat(entry).items() if torch.is_tensor(value)}


def _flat(entry: dict[str, Any]) -> dict[str, Any]:
    """One parameter's state with nested dicts flattened to "outer/inner" keys."""
    out: dict[str, Any] = {}
    for key, value in entry.items():
        if isinstance(value, dict):
            out.update({f"{key}/{inner}": v for inner, v in value.items()})
        else:
            out[key] = value
    return out


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`_flat`."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        outer, sep, inner = key.partition("/")
        if sep:
            out.setdefault(outer, {})[inner] = value
        else:
            out[key] = value
    return out


def _save_optimizer(folder: Path, optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    full = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in full["state"].items():
        for key, value in _flat(entry).items():
            if not torch.is_tensor(value):
                scalars.setdefault(str(index), {})[key] = value
    save_file(tensors, str(folder / "optimizer.safetensors"))
    meta = {"param_groups": full["param_groups"], "scalars": scalars, "indices": [str(i) for i in full["state"]]}
    (folder / "optimizer.json").write_text(json.dumps(meta))


def _load_optimizer(folder: Path, optimizer: torch.optim.Optimizer) -> None:
    meta = json.loads((folder / "optimizer.json").read_text())
    tensors = load_file(str(folder / "optimizer.safetensors"))
    state: dict[int, dict[str, Any]] = {int(i): dict(meta["scalars"].get(i, {})) for i in meta["indices"]}
    params = [p for group in optimizer.param_groups for p in group["params"]]
    for name, value in tensors.items():
        index, _, key = name.partition(".")
        param = params[int(index)]
        state[int(index)][key] = _like(value, param) if value.shape == param.shape and "/" not in key else value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]]
    optimizer.load_state_dict({"state": {i: _nest(e) for i, e in state.items()}, "param_groups": groups})


def _save_rng(folder: Path) -> None:
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    python_numpy = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }
    (folder / "rng.json").write_text(json.dumps(python_numpy))
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    save_file(tensors, str(folder / "rng.safetensors"))


def _load_rng(folder: Path) -> None:
    saved = json.loads((folder / "rng.json").read_text())
    version, internal, gauss = saved["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = saved["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    tensors = load_file(str(folder / "rng.safetensors"))
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("cuda.")), key=lambda k: int(k[5:]))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
