"""Several classification heads on one shared encoder (multi-task classification).

The encoder is the backbone of the base model's sequence-classification class (for BERT-like
models ``BertModel`` with its pooler), so ``model.overrides``, dtype and pad token handling are
exactly those of :func:`lmforge.model.load_model`. Each task gets its own head (dropout + linear,
``len(labels)`` outputs) over the pooled representation: the encoder's ``pooler_output`` when it
has one, else the attention-masked mean of the last hidden state.

Rows of one batch may belong to different tasks (``task``: (B,) task indices): each row goes
through its own task's head, and the returned ``logits`` are (B, max labels over tasks) with the
slots a row's task does not have filled with the dtype's lowest value, so softmax gives them
probability 0, argmax never picks them and cross-entropy over the row equals cross-entropy over
its task's classes. Only the heads of the tasks present in the batch get non-zero gradients.

Names are chosen so the training methods work unchanged: ``base_model`` is the encoder (freeze
trains what lies outside it: the heads); each head's linear layer is ``heads.<task>.classifier``,
which peft's sequence-classification task type trains and saves (``modules_to_save``) under LoRA.

Export: :func:`save_multihead` writes a folder (the encoder as a plain transformers model + the
tokenizer + ``heads.safetensors`` + ``multitask.json``); :func:`load_multihead` reads it back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from lmforge.atomic import atomic_dir
from lmforge.model.task import TaskInfo

MANIFEST = "multitask.json"
HEADS_FILE = "heads.safetensors"


class TaskHead(nn.Module):
    """Dropout then a linear layer: pooled (N, hidden) -> logits (N, num_labels)."""

    def __init__(self, hidden: int, num_labels: int, dropout: float):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, num_labels)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(pooled))


class MultiHeadClassifier(nn.Module):
    """A shared ``encoder`` and one :class:`TaskHead` per task.

    tasks: ``[(name, labels), ...]``; task index i in a batch's ``task`` tensor means ``tasks[i]``.
    """

    def __init__(self, encoder: nn.Module, tasks: list[tuple[str, list[str]]], dropout: float = 0.1,
                 init_std: float = 0.02):
        super().__init__()
        if not tasks:
            raise ValueError("MultiHeadClassifier needs at least one task")
        self.encoder = encoder
        self.config = encoder.config
        self.tasks = [(str(name), [str(label) for label in labels]) for name, labels in tasks]
        hidden = int(encoder.config.hidden_size)
        self.heads = nn.ModuleDict({name: TaskHead(hidden, len(labels), dropout) for name, labels in self.tasks})
        self.dropout_p = float(dropout)
        for head in self.heads.values():
            nn.init.normal_(head.classifier.weight, std=init_std)
            nn.init.zeros_(head.classifier.bias)
        first = next(encoder.parameters())
        self.heads.to(device=first.device, dtype=first.dtype)

    @property
    def base_model(self) -> nn.Module:
        """The shared encoder (what ``freeze`` keeps frozen; the heads lie outside it)."""
        return self.encoder

    @property
    def max_labels(self) -> int:
        return max(len(labels) for _, labels in self.tasks)

    def save_pretrained(self, out_dir: str | Path, **_: Any) -> None:
        """Write the encoder (transformers folder), ``heads.safetensors`` and ``multitask.json`` into ``out_dir``."""
        from lmforge.model.quiet import quiet_transformers

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        heads = {f"{name}.{key}": value.detach().to("cpu").contiguous()
                 for name, head in self.heads.items() for key, value in head.state_dict().items()}
        with quiet_transformers():
            self.encoder.save_pretrained(out_dir)
        save_file(heads, str(out_dir / HEADS_FILE), metadata={"format": "pt"})
        manifest = {"tasks": [{"name": name, "labels": labels} for name, labels in self.tasks], "dropout": self.dropout_p}
        (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")

    @classmethod
    def from_pretrained(cls, folder: str | Path, dtype: torch.dtype | None = None, **_: Any) -> "MultiHeadClassifier":
        """Read a :meth:`save_pretrained` folder (see :func:`load_multihead`)."""
        return load_multihead(folder, dtype)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, task=None, labels=None,
                inputs_embeds=None, output_hidden_states=None, output_attentions=None, return_dict=None,
                **kwargs) -> SequenceClassifierOutput:
        """Encode, pool, and apply each row's task head.

        task: (B,) long task indices; None returns ``logits=None`` (encoder features only, e.g.
        hidden states for drift statistics). ``labels`` is accepted and ignored (the objective
        computes the loss). Returns ``SequenceClassifierOutput(logits (B, max_labels), hidden_states,
        attentions)``.
        """
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, inputs_embeds=inputs_embeds,
                           output_hidden_states=output_hidden_states, output_attentions=output_attentions,
                           return_dict=True, **extra)
        logits = None if task is None else self.route(pool(out, attention_mask), task)
        return SequenceClassifierOutput(logits=logits, hidden_states=out.hidden_states, attentions=out.attentions)

    def route(self, pooled: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """Per-row head outputs: pooled (B, hidden), task (B,) -> logits (B, max_labels), padded (see module doc).

        Every head runs on every row (heads are small) and each row keeps its own task's output, so
        every head stays in the autograd graph (DDP without find_unused_parameters needs that); the
        heads of tasks absent from the batch get zero gradients.
        """
        if int(task.min()) < 0 or int(task.max()) >= len(self.tasks):
            raise ValueError(f"task index out of range 0..{len(self.tasks) - 1}: {task.tolist()}")
        low = torch.finfo(torch.float32).min
        logits = torch.full((pooled.shape[0], self.max_labels), low, dtype=torch.float32, device=pooled.device)
        for index, (name, labels) in enumerate(self.tasks):
            out = F.pad(self.heads[name](pooled).float(), (0, self.max_labels - len(labels)), value=low)
            logits = torch.where((task == index).unsqueeze(-1), out, logits)
        return logits


def pool(out: Any, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """The encoder's ``pooler_output`` when present, else the masked mean of ``last_hidden_state``: (B, hidden)."""
    pooled = getattr(out, "pooler_output", None)
    if pooled is not None:
        return pooled
    hidden = out.last_hidden_state
    if attention_mask is None:
        return hidden.mean(dim=1)
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


def single_head(task: TaskInfo) -> TaskInfo:
    """The one-head classifier to load first: the encoder :func:`build_multihead` puts ``task.tasks``' heads on."""
    if not task.tasks:
        raise ValueError("a multi-head TaskInfo needs tasks")
    _name, labels = task.tasks[0]
    return TaskInfo("sequence_classification", len(labels), tuple(labels))


def build_multihead(single: nn.Module, task: TaskInfo) -> MultiHeadClassifier:
    """One head per ``task.tasks`` entry on the encoder of ``single`` (a classifier loaded with :func:`single_head`)."""
    if not task.tasks:
        raise ValueError("build_multihead needs TaskInfo.tasks")
    encoder = single.base_model
    config = encoder.config
    dropout = getattr(config, "classifier_dropout", None)
    if dropout is None:
        dropout = getattr(config, "hidden_dropout_prob", 0.1)
    return MultiHeadClassifier(encoder, [(n, list(ls)) for n, ls in task.tasks], float(dropout),
                               float(getattr(config, "initializer_range", 0.02)))


def save_multihead(model: MultiHeadClassifier, tokenizer: Any, out_dir: str | Path) -> Path:
    """Write ``model`` (a plain, merged MultiHeadClassifier) and ``tokenizer`` into ``out_dir`` atomically.

    Layout: the encoder as a transformers folder (config.json, model.safetensors), the tokenizer
    files, ``heads.safetensors`` (``<task>.classifier.weight`` / ``.bias``) and ``multitask.json``
    (``{"tasks": [{"name", "labels"}], "dropout"}``). Returns ``out_dir``.
    """
    if not isinstance(model, MultiHeadClassifier):
        raise TypeError(f"save_multihead needs a MultiHeadClassifier, got {type(model).__name__}")
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
    return out_dir


def load_multihead(folder: str | Path, dtype: torch.dtype | None = None) -> MultiHeadClassifier:
    """A :func:`save_multihead` folder as a MultiHeadClassifier in eval mode (``dtype``: default as saved)."""
    from transformers import AutoModel

    from lmforge.model.quiet import quiet_transformers

    folder = Path(folder)
    manifest = json.loads((folder / MANIFEST).read_text())
    with quiet_transformers():
        encoder = AutoModel.from_pretrained(folder, dtype=dtype or "auto")
    model = MultiHeadClassifier(encoder, [(t["name"], t["labels"]) for t in manifest["tasks"]], manifest["dropout"])
    state = load_file(str(folder / HEADS_FILE))
    with torch.no_grad():
        for name, head in model.heads.items():
            head.load_state_dict({key: state[f"{name}.{key}"] for key in head.state_dict()})
    return model.eval()
