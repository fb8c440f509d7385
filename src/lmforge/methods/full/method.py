"""Full fine-tuning: every parameter trains; the result is a complete transformers model."""

from __future__ import annotations

from pathlib import Path
from torch import nn

from lmforge.methods.base import MethodBase
from lmforge.model.task import TaskInfo


class FullMethod(MethodBase):
    """Trains all weights; saves / loads a whole model folder (safetensors)."""

    def apply(self, model: nn.Module, task: TaskInfo) -> nn.Module:
        """Mark every parameter trainable; returns ``model`` itself."""
        for param in model.parameters():
            param.requires_grad_(True)
        return model

    def save(self, model: nn.Module, out_dir: Path) -> None:
        """``save_pretrained`` into ``out_dir`` (config + safetensors weights)."""
        from lmforge.model.quiet import quiet_transformers

        with quiet_transformers():
            model.save_pretrained(Path(out_dir))

    def load(self, base: nn.Module, in_dir: Path, task: TaskInfo) -> nn.Module:
        """Load the saved model folder with ``base``'s class, dtype and device (``base`` is dropped)."""
        from lmforge.model.quiet import quiet_transformers

        first = next(base.parameters())
        with quiet_transformers():
            model = type(base).from_pretrained(Path(in_dir), dtype=first.dtype)
        return model.to(first.device).eval()

    def merge(self, model: nn.Module) -> nn.Module:
        """Nothing to fold in: the trained model is already a plain transformers model."""
        return model
