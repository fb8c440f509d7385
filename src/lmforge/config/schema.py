"""The run config: one YAML file, nested by stage. Defaults live here; a YAML lists only what differs.

Every section is strict (unknown keys fail with a "did you mean" hint) and frozen (derived values
go in separate result objects, the config is never mutated). ``method`` and ``objective`` are
open choices: their parameters are validated by the chosen method's / objective's own config
class (see ``lmforge.plan``), so adding a method never edits this file.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Canonical fields of each data format; ``data.columns`` maps them to the user's column names.
FORMAT_FIELDS: dict[str, tuple[str, ...]] = {
    "text": ("text",),
    "instruction": ("instruction", "input", "output", "system"),
    "chat": ("messages",),
    "classification": ("text", "text_pair", "label"),
    "preference": ("prompt", "chosen", "rejected"),
}


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunSection(Section):
    name: str = "run"
    output_dir: str | None = Field(default=None, description="Run folder; default runs/<name>.")
    seed: int = 42

    @property
    def dir(self) -> str:
        return self.output_dir or f"runs/{self.name}"


class ModelConfig(Section):
    name: str = Field(description="Built-in name, local HF folder, hub id, or a .gguf file.")
    revision: str | None = None
    gguf_file: str | None = Field(default=None, description="GGUF file inside a folder/hub repo.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    trust_remote_code: bool = False
    overrides: dict[str, int | float | bool | str] = Field(
        default_factory=dict,
        description="Model-config fields to override at load time, e.g. num_hidden_layers: 2.",
    )


class SourceConfig(Section):
    path: str = Field(description="File, folder, datasets.save_to_disk folder, or hub dataset id.")
    split: str | None = None
    limit: int | None = Field(default=None, ge=1)


def _as_source(value: Any) -> Any:
    return {"path": value} if isinstance(value, str) else value


class DataConfig(Section):
    format: Literal["text", "instruction", "chat", "classification", "preference"]
    train: SourceConfig
    eval: SourceConfig | None = None
    eval_fraction: float = Field(default=0.1, gt=0.0, lt=0.9)
    columns: dict[str, str] = Field(default_factory=dict)
    max_length: int = Field(default=512, ge=8)
    train_on: Literal["completion", "all"] = "completion"
    system_prompt: str | None = None
    labels: list[str] | None = None
    packing: bool = False

    @model_validator(mode="before")
    @classmethod
    def _sources(cls, values: Any) -> Any:
        if isinstance(values, dict):
            values = dict(values)
            for key in ("train", "eval"):
                if key in values:
                    values[key] = _as_source(values[key])
        return values

    @model_validator(mode="after")
    def _columns_known(self) -> "DataConfig":
        allowed = FORMAT_FIELDS[self.format]
        for key in self.columns:
            if key not in allowed:
                from lmforge.config.hints import did_you_mean

                raise ValueError(
                    f"columns.{key}: not a field of format '{self.format}'"
                    f"{did_you_mean(key, allowed)}; fields are {', '.join(allowed)}"
                )
        return self

    def column(self, field: str) -> str:
        """The user's column name for canonical ``field``."""
        return self.columns.get(field, field)


class ChoiceConfig(BaseModel):
    """``name`` plus that choice's own parameters (validated by its registered config class)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class EarlyStopping(Section):
    metric: str | None = Field(default=None, description="Default: eval.metric.")
    patience: int = Field(default=3, ge=1)
    min_delta: float = 0.0


class TrainConfig(Section):
    epochs: float = Field(default=1.0, gt=0)
    max_steps: int | None = Field(default=None, ge=1)
    batch_size: int = Field(default=8, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    lr: float = Field(default=2e-4, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    warmup_ratio: float = Field(default=0.05, ge=0, lt=1)
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    max_grad_norm: float | None = Field(default=1.0, gt=0)
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    eval_every: int | None = Field(default=None, ge=1, description="Steps; default once per epoch.")
    save_every: int | None = Field(default=None, ge=1, description="Steps; default = eval_every.")
    log_every: int = Field(default=10, ge=1)
    early_stopping: EarlyStopping | None = None
    threads: int | None = Field(default=None, ge=1)
    tensorboard: bool = True


class EvalConfig(Section):
    before: bool = Field(default=True, description="Evaluate the base model first (before -> after).")
    metric: str | None = Field(
        default=None, description="Metric that picks the best checkpoint; default per objective."
    )
    max_examples: int | None = Field(default=None, ge=1)
    batch_size: int | None = Field(default=None, ge=1)
    generations: int = Field(default=3, ge=0, description="Held-out prompts shown before -> after.")
    max_new_tokens: int = Field(default=64, ge=1)


class ExportConfig(Section):
    adapter: bool = True
    merged: bool | None = Field(default=None, description="Merged full model; default: when the method can merge.")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    dir: str | None = Field(default=None, description="Default: <run dir>/export.")


class RunConfig(Section):
    run: RunSection = Field(default_factory=RunSection)
    model: ModelConfig
    data: DataConfig
    method: ChoiceConfig = Field(default_factory=lambda: ChoiceConfig(name="lora"))
    objective: ChoiceConfig | None = Field(
        default=None, description="Default: classification for classification data, else causal_lm."
    )
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)

    @property
    def objective_name(self) -> str:
        if self.objective is not None:
            return self.objective.name
        return "classification" if self.data.format == "classification" else "causal_lm"
