"""The run config: one YAML file, nested by stage. Defaults live here; a YAML lists only what differs.

Every section is strict (unknown keys fail with a "did you mean" hint) and frozen (derived values
go in separate result objects, the config is never mutated). ``method`` and ``objective`` are
open choices: their parameters are validated by the chosen method's / objective's own config
class (see ``lmforge.pipeline.plan``), so adding a method never edits this file.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lmforge.config.prepare import PrepareConfig

class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RunSection(Section):
    name: str = Field(default="run", description="Run name; the run folder is runs/<name> unless output_dir is set. "
                      "Default: the config file's name (`sentiment.yaml` -> runs/sentiment); `run` for configs built "
                      "in code.")
    output_dir: str | None = Field(default=None, description="Run folder; default runs/<name>.")
    seed: int = Field(default=42, description="Seeds data order, splits, initialisation and dropout.")

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:  # runs/<name> must stay inside runs/ (lmforge.outputs)
        from lmforge.outputs import check_name

        return check_name(value, "run name")

    @property
    def dir(self) -> str:
        return self.output_dir or f"runs/{self.name}"


class ModelConfig(Section):
    name: str = Field(description="Built-in name, local HF folder, hub id, or a .gguf file. Left out (or no model "
                      "section): the built-in encoder (minilm-l6) for the classification objective, else the built-in "
                      "causal LM (smollm2-135m-instruct); said at the start and recorded in config.yaml.",
                      json_schema_extra={"default_doc": "picked for the task"})
    revision: str | None = Field(default=None, description="Hub revision (branch, tag or commit) for hub ids.")
    gguf_file: str | None = Field(default=None, description="GGUF file inside a folder/hub repo.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto", description="Weight dtype at load; auto = float32 on CPU, bfloat16 on a bf16 GPU."
    )
    trust_remote_code: bool = Field(default=False, description="Run model code shipped with a hub repo (off unless you trust it).")
    overrides: dict[str, int | float | bool | str] = Field(
        default_factory=dict,
        description="Model-config fields to override at load time, e.g. num_hidden_layers: 2.",
    )


# Data format names are checked against the format registry (lmforge.data.formats) by the plan.
DataFormat = str


class SplitConfig(Section):
    """How train / validation / test are carved out of ``data.train`` (the parts not given as files)."""

    validation: float = Field(default=0.1, ge=0, lt=1, description="Share of data.train held out for validation "
                              "(picks the best checkpoint, early stopping) unless data.validation is given; 0 = none.")
    test: float = Field(default=0.1, ge=0, lt=1, description="Share of data.train held out for test (the reported "
                        "before -> after numbers; nothing is tuned on it) unless data.test is given; 0 = none.")
    stratify: bool = Field(default=True, description="Keep label shares per split (classification).")
    group_by: str | None = Field(default=None, description="Record field; one group never spans splits.")

    @model_validator(mode="after")
    def _ratios(self) -> "SplitConfig":
        if self.validation + self.test >= 1:
            raise ValueError("validation + test must be below 1")
        return self


class SourceConfig(Section):
    path: str = Field(description="File, folder, datasets.save_to_disk folder, or hub dataset id.")
    split: str | None = Field(default=None, description="Split of a DatasetDict / hub dataset (e.g. train).")
    limit: int | None = Field(default=None, ge=1, description="Keep only the first N examples.")
    format: DataFormat | None = Field(
        default=None,
        description="This source's record layout when it differs from data.format (instruction <-> chat convert); default: data.format.",
    )
    columns: dict[str, str] | None = Field(
        default=None, description="Canonical field -> column name for this source only; default: data.columns."
    )


SOURCE_KEYS = ("train", "validation", "test")  # the data sections that name sources


def _as_source(value: Any) -> Any:
    if isinstance(value, list):
        return [_as_source(v) for v in value]
    return {"path": value} if isinstance(value, str) else value


def source_list(value: "SourceConfig | list[SourceConfig] | None") -> list[SourceConfig]:
    """``data.train`` / ``validation`` / ``test`` as a list of sources (one source, a list of them, or none)."""
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]

class TaskSource(Section):
    """One task of a multi-task run (``data.tasks``). A field left out takes the top-level ``data`` value."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                      description="Unique task name (letters, digits, _ . -); metrics are reported as task/<name>/<metric>.")
    weight: float = Field(default=1.0, gt=0, description="Share of the mix (see data.mixing).")
    format: DataFormat | None = Field(default=None, description="Example format; default: data.format, else told from "
                                      "the task's data like data.format.")
    train: SourceConfig = Field(description="Training data: a path string or {path, split, limit}.")
    validation: SourceConfig | None = Field(default=None, description="Validation data; default: data.split.validation of train.")
    test: SourceConfig | None = Field(default=None, description="Test data; default: data.split.test of train.")
    split: SplitConfig | None = Field(default=None, description="Default: data.split.")
    columns: dict[str, str] | None = Field(default=None, description="Canonical field -> your column name; default: data.columns.")
    labels: list[str] | None = Field(default=None, min_length=2,
                                     description="This task's label set (classification, at least two); default: labels seen.")
    system_prompt: str | None = Field(default=None, description="System message for this task's instruction examples.")

    @model_validator(mode="before")
    @classmethod
    def _sources(cls, values: Any) -> Any:
        if isinstance(values, dict):
            values = {k: _as_source(v) if k in SOURCE_KEYS else v for k, v in values.items()}
        return values


class DataConfig(Section):
    format: DataFormat = Field(
        description="Example format (see Data formats). Left out: told from the column names of data.train's first "
        "record (messages: chat; prompt, chosen, rejected: preference; text, label: classification; instruction, "
        "output or prompt, completion: instruction; text or .txt/.md files: text) and recorded in the run's "
        "config.yaml. With data.tasks: the tasks' default (default: the first task's).",
        json_schema_extra={"default_doc": "from the data"},
    )
    train: SourceConfig | list[SourceConfig] | None = Field(
        default=None,
        description="Training data: a path string, {path, split, limit, format, columns}, or a list of those (collected "
        "into one dataset in order). Required unless data.tasks is given.",
    )
    validation: SourceConfig | list[SourceConfig] | None = Field(
        default=None, description="Validation data (same forms as train): picks the best checkpoint and early-stops; "
        "default: data.split.validation of train."
    )
    test: SourceConfig | list[SourceConfig] | None = Field(
        default=None, description="Test data (same forms as train): the reported before -> after numbers, never used "
        "to choose anything; default: data.split.test of train."
    )
    split: SplitConfig = Field(default_factory=SplitConfig, description="Shares of train held out for validation and test.")
    columns: dict[str, str] = Field(default_factory=dict, description="Canonical field -> your column name.")
    max_length: int = Field(default=512, ge=8, description="Tokens per example (text is chunked to it; others truncated).")
    train_on: Literal["completion", "all"] = Field(
        default="completion", description="Loss on assistant/completion tokens only, or on every token."
    )
    system_prompt: str | None = Field(default=None, description="System message added to instruction examples.")
    labels: list[str] | None = Field(default=None, min_length=2,
                                     description="Classification label set (order = class ids, at least two); default: sorted labels seen.")
    packing: bool = Field(default=False, description="Pack several examples per row without padding (causal LM).")
    prepare: PrepareConfig | None = Field(
        default=None, description="Clean, deduplicate, redact, label-check and split (docs/data-prepare.md)."
    )
    tasks: list[TaskSource] | None = Field(
        default=None, description="Multi-task: several named datasets in one run (docs: multi-task). Replaces data.train / validation / test."
    )
    mixing: Literal["concatenate", "interleave", "temperature"] = Field(
        default="concatenate",
        description="How tasks mix per epoch: concatenate (each task's examples x weight), interleave (draws with "
        "probability ~ weight), temperature (probability ~ (size x weight)^(1/temperature)).",
    )
    temperature: float = Field(default=2.0, gt=0, description="Temperature of mixing: temperature (1 = by size, larger = more even).")

    @model_validator(mode="before")
    @classmethod
    def _sources(cls, values: Any) -> Any:
        if isinstance(values, dict):
            values = dict(values)
            for key in SOURCE_KEYS:
                if key in values:
                    values[key] = _as_source(values[key])
            tasks = values.get("tasks")
            first = tasks[0] if isinstance(tasks, list) and tasks and isinstance(tasks[0], dict) else {}
            if "format" not in values and first.get("format") is not None:
                values["format"] = first["format"]  # the tasks' shared kind (checked below)
        return values

    @model_validator(mode="after")
    def _sources_given(self) -> "DataConfig":
        if self.tasks is None and self.train is None:
            raise ValueError("train: required field is missing (or give data.tasks)")
        for key in SOURCE_KEYS:
            if getattr(self, key) == []:
                raise ValueError(f"{key}: the list of sources is empty")
        if self.tasks is not None:
            self._check_tasks()
        return self

    def _check_tasks(self) -> None:
        """Multi-task structure: no top-level sources, unique names (the plan checks each task's section)."""
        for key in SOURCE_KEYS:
            if getattr(self, key) is not None:
                raise ValueError(f"{key}: not used with data.tasks; give each task its own train (and validation / test)")
        if not self.tasks:
            raise ValueError("tasks: give at least one task (name, train)")
        seen: set[str] = set()
        for i, task in enumerate(self.tasks):
            if task.name in seen:
                raise ValueError(f"tasks.{i}.name: task name '{task.name}' is used twice; names must be unique")
            seen.add(task.name)

    def for_source(self, source: SourceConfig) -> "DataConfig":
        """This config as seen by one source: its format and column mapping in place of the run's."""
        if source.format is None and source.columns is None:
            return self
        return self.model_copy(update={"format": source.format or self.format,
                                       "columns": self.columns if source.columns is None else source.columns})

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
    patience: int = Field(default=3, ge=1, description="Evaluations without improvement before stopping.")
    min_delta: float = Field(default=0.0, description="Smallest change that counts as an improvement.")


class DistributedConfig(Section):
    """How several processes (``lmforge train --nproc N`` / torchrun) share the work. One process: ignored."""

    strategy: Literal["ddp", "fsdp"] = Field(
        default="ddp", description="ddp: replicate the model; fsdp: shard parameters, grads and optimizer state."
    )
    backend: Literal["auto", "gloo", "nccl"] = Field(default="auto", description="auto: nccl on CUDA, gloo on CPU.")
    timeout_s: int = Field(default=1800, ge=10, description="Seconds a collective waits for the other processes.")


class MemoryConfig(Section):
    activation_checkpointing: bool | int = Field(
        default=False, description="Recompute layer activations in backward: true = every layer, N = every N-th."
    )
    base_dtype: Literal["auto", "float32", "bfloat16"] = Field(
        default="auto",
        description="Storage dtype of frozen weights while training; auto = bfloat16 when precision is bf16 "
        "(trainable weights and optimizer state stay float32).",
    )
    shards: str | None = Field(
        default=None,
        description="Folder of memory-mapped token shards: training data is tokenized into it once (reused "
        "when it matches) and read lazily, for corpora larger than RAM; 'auto' = <run dir>/shards.",
    )


class TrainConfig(Section):
    epochs: float | None = Field(
        default=None, gt=0,
        description="Passes over the training data (fractions allowed). Unset: the method's default, 1 except "
        "where a method measurably needs more (prefix and P-tuning on classification: docs/methods.md).")
    max_steps: int | None = Field(default=None, ge=1, description="Optimizer steps; overrides epochs when set.")
    batch_size: int = Field(default=8, ge=1, description="Examples per micro-batch.")
    grad_accum: int = Field(default=1, ge=1, description="Micro-batches per optimizer step (token-weighted).")
    lr: float | None = Field(
        default=None, gt=0,
        description="Peak learning rate (AdamW); default: the method's own (`lmforge methods` lists them; the run "
        "folder's config.yaml records the value used).",
    )
    weight_decay: float = Field(default=0.0, ge=0, description="AdamW weight decay (not on biases and norms).")
    warmup_ratio: float = Field(default=0.05, ge=0, lt=1, description="Share of steps with linear warmup.")
    scheduler: Literal["cosine", "linear", "constant"] = Field(default="cosine", description="Decay after warmup.")
    max_grad_norm: float | None = Field(default=1.0, gt=0, description="Gradient clipping norm; null = off.")
    eval_every: int | None = Field(default=None, ge=1, description="Steps; default once per epoch.")
    save_every: int | None = Field(default=None, ge=1, description="Steps; default = eval_every.")
    log_every: int = Field(default=10, ge=1, description="Steps between log lines / metrics.jsonl entries.")
    early_stopping: EarlyStopping | None = Field(default=None, description="Stop when eval.metric stops improving.")
    tensorboard: bool = Field(default=True, description="Write TensorBoard events to <run>/tensorboard.")
    optimizer: Literal["adamw", "adamw_8bit", "paged_adamw_8bit"] = Field(
        default="adamw", description="adamw (fused/foreach torch) or bitsandbytes 8-bit AdamW state (paged: CUDA only)."
    )


class RuntimeConfig(Section):
    """Where and how the math runs: device, precision, threads, compile, memory levers, several processes.
    None of it changes what is learned beyond floating-point rounding (int8: see docs/performance.md)."""

    precision: Literal["auto", "fp32", "bf16", "int8"] = Field(
        default="auto", description="bf16 autocast (AMX / AVX512-BF16 CPUs, bf16 GPUs) or fp32; auto picks bf16 when "
        "native (CPU flags, unless ONEDNN_MAX_CPU_ISA holds oneDNN below them). int8 (CPU, method lora): the "
        "frozen base multiplies in int8, the rest fp32 (docs/performance.md); refused where int8 matmuls are not exact."
    )
    device: Literal["auto", "cpu", "cuda"] = Field(default="auto", description="auto = cuda when available.")
    threads: int | None = Field(default=None, ge=1, description="CPU threads for torch; default: the CPUs other processes leave free, re-checked around evaluations.")
    compile: bool = Field(default=False, description="torch.compile the transformer blocks (see docs/performance.md).")
    memory: MemoryConfig = Field(default_factory=MemoryConfig, description="Memory levers.")
    distributed: DistributedConfig = Field(
        default_factory=DistributedConfig, description="Multi-process strategy (used when launched with N > 1)."
    )


class JudgeConfig(Section):
    """LLM-as-judge: an OpenAI-compatible endpoint grades answers against the references (1..scale)."""

    url: str = Field(description="API base URL ending in /v1, e.g. http://127.0.0.1:8000/v1 (lmforge serve works).")
    model: str = Field(description="Model name the judge endpoint serves.")
    api_key_env: str = Field(default="OPENAI_API_KEY", description="Environment variable holding the judge's API key.")
    prompt: str | None = Field(
        default=None, description="Judge prompt with {question} {reference} {answer} {scale}; default: built-in grader prompt."
    )
    scale: int = Field(default=5, ge=2, le=100, description="Grades run from 1 to scale.")
    examples: int = Field(default=20, ge=1, description="Held-out examples answered (greedy) and graded, before and after.")


class EvalConfig(Section):
    before: bool = Field(default=True, description="Evaluate the base model first (before -> after).")
    metric: str | None = Field(
        default=None, description="Metric that picks the best checkpoint; default per objective."
    )
    max_examples: int | None = Field(default=None, ge=1, description="Evaluate on the first N held-out examples.")
    batch_size: int | None = Field(default=None, ge=1, description="Default: train.batch_size.")
    generations: int = Field(default=3, ge=0, description="Held-out prompts shown before -> after.")
    max_new_tokens: int = Field(default=64, ge=1, description="Tokens per sample generation.")
    repetition_penalty: float = Field(
        default=1.0, gt=0, description="Greedy answers (samples, generation metrics) make tokens already in the prompt or "
        "answer less likely by this factor (transformers' repetition_penalty; 1 = off, 1.1-1.3 stops most loops).",
    )
    generate_metrics: int = Field(
        default=0, ge=0,
        description="At every evaluation, score greedy answers on this many held-out chat/instruction examples "
        "(exact_match, token_f1, rouge1/2/L, bleu; usable as eval.metric).",
    )
    judge: JudgeConfig | None = Field(
        default=None, description="Grade before/after answers with an LLM judge (chat / instruction data); prompt kept in the report."
    )
    forgetting: str | None = Field(
        default=None,
        description="General-domain set scored before and after training to show forgetting: asset:wiki "
        "(general text -> perplexity), asset:nq-open or asset:boolq (general QA -> token F1), or a JSONL file.",
    )


class ExportConfig(Section):
    adapter: bool = Field(default=True, description="Save the trained add-on (PEFT adapter folder) for non-full methods.")
    merged: bool | None = Field(default=None, description="Merged full model; default: when the method can merge.")
    dtype: Literal["float32", "bfloat16", "float16"] = Field(default="float32", description="dtype of the merged model.")
    dir: str | None = Field(default=None, description="Default: <run dir>/export.")
    formats: list[Literal["gguf-f16", "gguf-q8_0", "gguf-f32", "onnx"]] = Field(
        default_factory=list, description="Extra formats: GGUF (+ Ollama Modelfile) for Llama-type LMs, ONNX for classifiers."
    )
    parity_prompts: int = Field(default=3, ge=1, description="Held-out prompts every export's parity check runs.")


class RunConfig(Section):
    run: RunSection = Field(default_factory=RunSection)
    model: ModelConfig
    data: DataConfig
    method: ChoiceConfig = Field(default_factory=lambda: ChoiceConfig(name="lora"))
    objective: ChoiceConfig | None = Field(
        default=None, description="Default: classification for classification data, else causal_lm."
    )
    train: TrainConfig = Field(default_factory=TrainConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)

    @property
    def objective_name(self) -> str | None:
        """The objective the config names; None: the data format's default (resolved by the plan)."""
        return self.objective.name if self.objective is not None else None
