"""Bottleneck adapters (our own module: peft has none, and the ``adapters`` package pins
transformers 4): zero-initialised, attached by forward hooks, saved on their own, never merged.

Where adapters go is found generically in each transformer block (the largest list of
same-typed blocks): the MLP output projection is the block's last linear layer; the attention
output projection is the last linear layer whose name mentions ``attn`` / ``attention``. Both can
be named explicitly (``method.mlp_output`` / ``method.attention_output``).

Saved folder: ``adapter_weights.safetensors`` (adapters + the trained task head) and
``adapter_config.json`` (method, the base model's path, params, the projections adapted, the
tensor names). The export around it (``lmforge.json``) records the base model and the task head.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from lmforge.atomic import atomic_write_text
from lmforge.errors import UserError
from lmforge.methods.adapter.config import AdapterParams
from lmforge.methods.adapter.module import CHILD, attach_adapter
from lmforge.methods.base import MethodBase
from lmforge.methods.freeze.method import head_names, transformer_blocks
from lmforge.model.task import TaskInfo

WEIGHTS = "adapter_weights.safetensors"
CONFIG = "adapter_config.json"


def is_projection(module: nn.Module) -> bool:
    """A linear layer: ``nn.Linear`` or transformers' GPT-2 style ``Conv1D``."""
    from transformers.pytorch_utils import Conv1D

    return isinstance(module, (nn.Linear, Conv1D))


def adapter_sites(model: nn.Module, params: AdapterParams) -> list[str]:
    """Qualified names of the projections that get an adapter, block by block.

    Raises UserError when the model has no transformer blocks / linear layers, or a name given in
    ``params`` is not a linear layer of the blocks.
    """
    try:
        prefix, blocks = transformer_blocks(model)
    except UserError:
        blocks = None
    if not blocks:
        raise UserError("method 'adapter' found no list of transformer blocks in this model", where="method.name",
                        hint="use method lora or full for this model")
    sites = []
    for index, block in enumerate(blocks):
        linears = [name for name, module in block.named_modules() if is_projection(module) and CHILD not in name]
        if not linears:
            raise UserError("method 'adapter' needs linear layers inside the transformer blocks", where="method.name",
                            hint="use method full or freeze for this model")
        chosen = [_site(linears, params.mlp_output, "mlp_output", lambda names: names[-1])]
        if params.style == "houlsby":
            chosen.insert(0, _site(linears, params.attention_output, "attention_output", _attention_output))
        sites += [f"{prefix}.{index}.{name}" for name in chosen]
    return sites


def _site(linears: list[str], given: str | None, field: str, default) -> str:
    if given is None:
        return default(linears)
    if given not in linears:
        raise UserError(f"method.{field} '{given}' is not a linear layer inside the transformer blocks",
                        where=f"method.{field}", hint=f"linear layers in a block: {', '.join(linears)}")
    return given


def _attention_output(linears: list[str]) -> str:
    attention = [n for n in linears if any("attn" in part or "attention" in part for part in n.lower().split("."))]
    if not attention:
        raise UserError("method 'adapter' (houlsby) found no attention output projection in the blocks",
                        where="method.attention_output", hint=f"name one of: {', '.join(linears)}")
    return attention[-1]


def _base_path(model: nn.Module) -> str:
    """The folder (absolute) or hub id ``model`` was loaded from; "" when unknown."""
    name = str(getattr(model, "name_or_path", "") or "")
    return str(Path(name).resolve()) if name and Path(name).exists() else name


class AdapterMethod(MethodBase):
    """Freezes the base, attaches bottleneck adapters, trains them (+ the classification head).
    Not mergeable (the default ``merge``): the adapters are non-linear."""

    params: AdapterParams

    def apply(self, model: nn.Module, task: TaskInfo) -> nn.Module:
        """Attach fresh adapters at :func:`adapter_sites`; returns ``model`` itself (outputs unchanged)."""
        sites = adapter_sites(model, self.params)
        heads = head_names(model) if task.head == "sequence_classification" else set()
        for name, param in model.named_parameters():
            param.requires_grad_(name in heads)
        for site in sites:
            attach_adapter(model.get_submodule(site), self.params.reduction_factor, self.params.non_linearity)
        return model

    def save(self, model: nn.Module, out_dir: Path) -> None:
        """Write the trainable tensors (safetensors) and ``adapter_config.json`` into ``out_dir``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        state = {n: p.detach().to("cpu").contiguous() for n, p in model.named_parameters() if p.requires_grad}
        save_file(state, str(out_dir / WEIGHTS), metadata={"format": "pt", "method": "adapter"})
        config = {
            "method": "adapter",
            "base_model_name_or_path": _base_path(model),
            "params": self.params.model_dump(),
            "sites": sorted({n.rsplit("." + CHILD + ".", 1)[0] for n in state if f".{CHILD}." in n}),
            "tensors": sorted(state),
        }
        atomic_write_text(out_dir / CONFIG, json.dumps(config, indent=2) + "\n")

    def load(self, base: nn.Module, in_dir: Path, task: TaskInfo) -> nn.Module:
        """Attach adapters to a freshly loaded ``base`` with the saved params and copy the saved
        tensors in; the result is frozen, in eval mode. UserError when the folder does not fit ``base``."""
        in_dir = Path(in_dir)
        config = json.loads((in_dir / CONFIG).read_text())
        method = AdapterMethod(self.spec, AdapterParams.model_validate(config["params"]))
        model = method.apply(base, task)
        state = load_file(str(in_dir / WEIGHTS))
        params = dict(model.named_parameters())
        missing = [n for n in config["tensors"] if n not in params or n not in state]
        unfilled = [n for n, p in params.items() if f".{CHILD}." in n and n not in state]
        if missing or unfilled:
            raise UserError(f"the saved adapters in '{in_dir}' do not fit this base model: {(missing + unfilled)[:3]}",
                            hint="load them over the same base model (and model.overrides) they were trained on")
        with torch.no_grad():
            for name in config["tensors"]:
                params[name].copy_(state[name].to(params[name].dtype))
        model.requires_grad_(False)
        return model.eval()
