"""Export the trained add-on (e.g. a PEFT adapter folder) on its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from lmforge.atomic import atomic_dir


def export_adapter(method: Any, model: nn.Module, out_dir: str | Path) -> Path:
    """Write what ``method`` trained into ``out_dir`` with ``method.save``; return ``out_dir``.

    For peft-based methods the folder is a plain peft adapter (``adapter_config.json`` +
    ``adapter_model.safetensors``) that ``peft.PeftModel.from_pretrained(base, out_dir)`` loads
    without lmforge. The folder appears whole or not at all (an existing one is replaced).
    """
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        method.save(model, tmp)
    return out_dir
