"""A model's structure without its weights: built on PyTorch's ``meta`` device from its config.

Parameters on the meta device have shapes and dtypes but no storage, so a 70B model's module tree
(and a method applied to it: LoRA matrices, prompt embeddings, ...) costs kilobytes. Used by
``lmforge estimate`` to count total and trainable parameters of the exact run before any weight
is read (:mod:`lmforge.train.estimate_run`).
"""

from __future__ import annotations

from typing import Any

import torch

from lmforge.config.schema import ModelConfig
from lmforge.model.load import load_config
from lmforge.model.quiet import quiet_transformers
from lmforge.model.source import ModelFiles, resolve_model_files
from lmforge.model.task import TaskInfo


def meta_model(model_cfg: ModelConfig, task: TaskInfo, files: ModelFiles | None = None) -> Any:
    """The model ``load_model`` would return (same config, overrides, head), with every parameter on
    the meta device: no weight file is opened. Multi-head classifiers are built with one head of
    the largest label count (their extra heads are a few thousand parameters)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    files = files or resolve_model_files(model_cfg)
    if task.tasks:
        task = TaskInfo("sequence_classification", task.num_labels, None)
    config = load_config(model_cfg, files.path, task, files.gguf_file)
    auto = AutoModelForCausalLM if task.head == "causal_lm" else AutoModelForSequenceClassification
    with torch.device("meta"), quiet_transformers():
        return auto.from_config(config, trust_remote_code=model_cfg.trust_remote_code)


def is_meta(model: Any) -> bool:
    """True when every parameter of ``model`` lives on the meta device (holds no memory)."""
    return all(p.device.type == "meta" for p in model.parameters())
