"""'Did you mean' hints for misspelled keys and names, including the names other tools use."""

from __future__ import annotations

import difflib
from typing import Iterable

# Keys users bring from other fine-tuning tools (transformers TrainingArguments, peft, axolotl,
# LLaMA-Factory, torchtune) -> lmforge's key in the same section. Suggested only when that key
# exists where the unknown one was written.
ALIASES: dict[str, str] = {
    "lora_rank": "r", "lora_r": "r", "rank": "r", "lora_alpha": "alpha", "lora_dropout": "dropout",
    "lora_target_modules": "target_modules", "dora": "use_dora", "rslora": "use_rslora",
    "batchsize": "batch_size", "bs": "batch_size", "per_device_train_batch_size": "batch_size",
    "micro_batch_size": "batch_size", "train_batch_size": "batch_size",
    "per_device_eval_batch_size": "batch_size", "eval_batch_size": "batch_size",
    "learning_rate": "lr", "num_epochs": "epochs", "num_train_epochs": "epochs", "epoch": "epochs",
    "gradient_accumulation_steps": "grad_accum", "gradient_accumulation": "grad_accum",
    "grad_accumulation": "grad_accum", "accumulation_steps": "grad_accum",
    "max_seq_length": "max_length", "max_seq_len": "max_length", "cutoff_len": "max_length",
    "sequence_len": "max_length", "seq_length": "max_length", "max_len": "max_length",
    "lr_scheduler_type": "scheduler", "lr_scheduler": "scheduler",
    "logging_steps": "log_every", "eval_steps": "eval_every", "save_steps": "save_every",
    "warmup_steps": "warmup_ratio", "warmup": "warmup_ratio",
    "max_grad_norm_clip": "max_grad_norm", "gradient_clipping": "max_grad_norm", "clip_grad_norm": "max_grad_norm",
    "optim": "optimizer", "num_threads": "threads",
    "model_name_or_path": "name", "base_model": "name", "model_name": "name", "model_id": "name", "path": "name",
    "torch_dtype": "dtype",
    "dataset": "train", "datasets": "train", "train_file": "train", "data_path": "train", "train_path": "train",
    "eval_file": "validation", "validation_file": "validation", "val": "validation", "eval": "validation",
    "dev": "validation", "test_file": "test", "eval_dataset": "validation", "test_dataset": "test",
    "sample_packing": "packing", "group_by_length": "packing",
    "max_samples": "limit", "num_samples": "limit", "max_examples": "limit",
    "column_mapping": "columns", "chat_template": "format",
    "trust_remote": "trust_remote_code",
}
# Keys that belong to another section: key -> the full path to use instead.
ELSEWHERE: dict[str, str] = {
    "seed": "run.seed", "output_dir": "run.output_dir", "output": "run.output_dir",
    "gradient_checkpointing": "runtime.memory.activation_checkpointing",
    "activation_checkpointing": "runtime.memory.activation_checkpointing",
    "bf16": "runtime.precision", "fp16": "runtime.precision", "precision": "runtime.precision",
    "threads": "runtime.threads", "device": "runtime.device", "compile": "runtime.compile", "memory": "runtime.memory",
    "distributed": "runtime.distributed", "torch_compile": "runtime.compile",
    "epochs": "train.epochs", "lr": "train.lr", "learning_rate": "train.lr", "batch_size": "train.batch_size",
    "max_steps": "train.max_steps", "num_epochs": "train.epochs", "num_train_epochs": "train.epochs",
    "r": "method.r", "lora_r": "method.r", "lora_rank": "method.r", "lora_alpha": "method.alpha",
    "max_length": "data.max_length", "max_seq_length": "data.max_length", "cutoff_len": "data.max_length",
    "base_model": "model.name", "model_name_or_path": "model.name",
    "split": "data.split", "eval_fraction": "data.split.validation", "val_set_size": "data.split.validation",
    "validation_split": "data.split.validation", "eval_split": "data.split.validation",
    "val_size": "data.split.validation", "test_size": "data.split.test",
}


def did_you_mean(word: str, choices: Iterable[str], *, fuzzy: bool = True) -> str:
    """Return ``"; did you mean 'x'?"`` for the lmforge name of another tool's key (see :data:`ALIASES`)
    or, with ``fuzzy``, the closest choice; else an empty string."""
    choices = [str(c) for c in choices]
    alias = ALIASES.get(str(word).lower().replace("-", "_"))
    if alias is not None and alias in choices:
        return f"; did you mean '{alias}'?"
    if not fuzzy:
        return ""
    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def elsewhere(word: str, here: str) -> str:
    """``"; it belongs in 'section.key'"`` when ``word`` is a setting of another section (``here``
    is the dotted path of the section it was written in), else an empty string."""
    path = ELSEWHERE.get(str(word).lower().replace("-", "_"))
    if path is None or path.rpartition(".")[0] == here:
        return ""
    return f"; did you mean '{path}'?"
