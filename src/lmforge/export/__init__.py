"""Export a trained run: the adapter on its own, a merged plain transformers model, a model card."""

from lmforge.export.adapter import export_adapter, load_export
from lmforge.export.card import file_sha256, render_model_card, write_model_card
from lmforge.export.merged import export_merged

__all__ = ["export_adapter", "export_merged", "file_sha256", "load_export", "render_model_card", "write_model_card"]
from lmforge.export.parity import TOLERANCES, ParityError, ParityResult, check_parity, verify_merged  # noqa: E402,F401
