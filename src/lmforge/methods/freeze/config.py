from typing import Any, Literal

from pydantic import Field, model_validator

from lmforge.errors import UserError
from lmforge.methods.registry import MethodParams

POOLED_ONLY = ("pooling", "head_hidden", "head_dropout", "cache_features", "cache_limit", "fit", "c", "cv_folds")


class FreezeParams(MethodParams):
    """Feature extraction: the base is frozen; the head (and optionally the last layers) train.

    ``head: auto`` trains the model's own head (e.g. ``classifier``). ``head: pooled`` replaces it
    with pooling over the attention mask + a small MLP on the frozen encoder (classification
    only); with ``cache_features`` each distinct input runs through the encoder once, so every
    epoch after the first costs only the head. ``fit: auto`` solves a linear pooled head on the
    frozen encoder's features instead of running the training loop (L-BFGS logistic regression, scikit-learn's
    objective; C given or chosen by cross-validation on the training set: :mod:`lmforge.methods.freeze.fit`).
    """

    last_layers: int = Field(default=0, ge=0, description="Transformer layers at the top that also train.")
    train_head: bool = Field(default=True, description="Train the task head (always for classification).")
    head: Literal["auto", "pooled"] = Field(
        default="auto", description="auto: the model's own head; pooled: pooling + MLP on the frozen encoder.")
    pooling: Literal["mean", "cls", "last"] = Field(
        default="mean", description="head: pooled: mean over real tokens, the first (CLS) or the last real token.")
    head_hidden: int = Field(default=0, ge=0, description="head: pooled: MLP hidden size (0 = one linear layer).")
    head_dropout: float = Field(default=0.1, ge=0.0, lt=1.0, description="head: pooled: dropout on the pooled features.")
    cache_features: bool = Field(
        default=False, description="head: pooled: compute each input's pooled features once and reuse them.")
    cache_limit: int = Field(
        default=200_000, ge=1, description="Most inputs cached (memory ~ n x hidden x 4 bytes + the token ids).")
    fit: Literal["auto", "lbfgs", "loop"] = Field(
        default="auto", description="head: pooled: lbfgs solves the linear head on the frozen features (no "
        "training loop; train.epochs / lr unused); loop trains it with the optimizer; auto: lbfgs when "
        "head_hidden and last_layers are 0.")
    c: float | None = Field(
        default=1.0, gt=0, description="fit lbfgs: inverse L2 strength, scikit-learn's C (same objective, same "
        "default); null = chosen by cross-validation on the training set.")
    cv_folds: int = Field(default=5, ge=2, le=20, description="fit lbfgs: folds of that cross-validation.")

    @model_validator(mode="after")
    def _pooled_settings(self):
        if self.head == "auto":
            # a setting that differs from its default (a dumped-and-reloaded config repeats the defaults)
            stray = [name for name in POOLED_ONLY
                     if name in self.model_fields_set and getattr(self, name) != type(self).model_fields[name].default]
            if stray:
                raise ValueError(f"{stray[0]}: only used with head: pooled (set method.head: pooled)")
            return self
        if not self.train_head:
            raise ValueError("train_head: head: pooled always trains its new head (remove train_head: false)")
        if self.fit == "lbfgs" and (self.head_hidden or self.last_layers):
            raise ValueError("fit: lbfgs solves a linear head on frozen features: set head_hidden: 0 and "
                             "last_layers: 0, or fit: loop")
        if self.cache_features and self.last_layers:
            raise ValueError(
                "cache_features: cached features are only valid while the whole encoder is frozen, but "
                f"last_layers is {self.last_layers} (set last_layers: 0, or cache_features: false)")
        return self

    @property
    def solves_head(self) -> bool:
        """Whether the head is solved on frozen features (fit lbfgs, or auto on a linear pooled head)."""
        if self.head != "pooled":
            return False
        return self.fit == "lbfgs" or (self.fit == "auto" and not self.head_hidden and not self.last_layers)

    @property
    def mergeable(self) -> bool:
        """A pooled head is no transformers architecture: it exports as its own folder only."""
        return self.head == "auto"

    def check_run(self, config: Any, objective: Any, where: str) -> None:
        """Cross-axis rules of ``head: pooled`` (called by :func:`lmforge.pipeline.plan.plan_run`)."""
        if self.head != "pooled":
            return
        if objective.head != "sequence_classification":
            raise UserError(
                f"a pooled head trains a classifier, but objective '{objective.name}' is not a "
                "classification objective", where=f"{where}: method.head",
                hint="use classification data (objective classification), or method.head: auto")
        export = config.export
        if export.merged or export.formats:
            raise UserError(
                "a pooled head (method.head: pooled) cannot be exported as a merged transformers model "
                "(pooling + MLP is not a transformers architecture)", where=f"{where}: export.merged" if export.merged
                else f"{where}: export.formats",
                hint="remove export.merged / export.formats: the run exports export/adapter "
                     "(head weights + manifest) and `lmforge eval RUN` uses it")
        if not export.adapter:
            raise UserError(
                "a pooled head (method.head: pooled) is exported only as its head folder, and export.adapter "
                "is off",
                where=f"{where}: export.adapter", hint="remove export.adapter: false")
