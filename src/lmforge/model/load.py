"""Load a base model and its tokenizer for a task.

``load_model`` picks the head from :class:`TaskInfo` (causal LM or sequence classification),
applies ``model.overrides`` to the loaded config (e.g. ``num_hidden_layers: 2`` keeps the first
two blocks of real weights), chooses the dtype and keeps transformers' load chatter quiet.
"""

from __future__ import annotations

from typing import Any

import torch
from safetensors import SafetensorError

from lmforge.config.hints import did_you_mean
from lmforge.config.schema import ModelConfig
from lmforge.errors import UserError
from lmforge.model.quiet import quiet_transformers, silence_library_notices
from lmforge.model.source import ModelFiles, resolve_model
from lmforge.model.task import TaskInfo

HEADS = ("causal_lm", "sequence_classification")
PAD_LIKE = ("<pad>", "[PAD]", "<|pad|>", "<|padding|>", "<|finetune_right_pad_id|>", "<|endoftext|>")

# Errors transformers raises for a folder it cannot load (missing files, bad config, shape mismatch).
LOAD_ERRORS = (OSError, ValueError, KeyError, RuntimeError, TypeError, ImportError, SafetensorError)


def load_tokenizer(model_cfg: ModelConfig, files: ModelFiles | None = None) -> Any:
    """The model's tokenizer with ``padding_side='right'`` and a pad token always set.

    A missing pad token becomes an existing pad-like special token, else the unk token, else
    eos (padding is masked out of attention and labels, so reusing a token is harmless).
    ``files`` (from :func:`resolve_model_files`) reads it without resolving the weights.
    """
    from transformers import AutoTokenizer

    files = files or ModelFiles(resolve_model(model_cfg).path)
    gguf = {"gguf_file": files.gguf_file} if files.gguf_file else {}
    try:
        with quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(
                files.path, trust_remote_code=model_cfg.trust_remote_code, **gguf
            )
    except LOAD_ERRORS as exc:
        raise _load_error(model_cfg, "tokenizer", exc) from exc
    tokenizer.padding_side = "right"
    vocab_size = _model_vocab_size(model_cfg, files)
    pad_id = tokenizer.pad_token_id
    if pad_id is None or (vocab_size is not None and pad_id >= vocab_size):
        # no pad, or one added beyond the model's embeddings (e.g. a GGUF-converted tokenizer)
        tokenizer.pad_token = choose_pad_token(tokenizer, vocab_size)
    return tokenizer


def choose_pad_token(tokenizer: Any, vocab_size: int | None = None) -> str:
    """Pick a pad token for a tokenizer that has none (see :func:`load_tokenizer`).

    Only tokens with an id below ``vocab_size`` (the model's embedding rows) qualify.
    """
    vocab = tokenizer.get_vocab()

    def fits(token: str | None) -> bool:
        return token is not None and token in vocab and (vocab_size is None or vocab[token] < vocab_size)

    for token in PAD_LIKE:
        if fits(token) and token != tokenizer.eos_token:
            return token
    if fits(tokenizer.unk_token):
        return tokenizer.unk_token
    if fits(tokenizer.eos_token):
        return tokenizer.eos_token
    raise UserError(
        "the tokenizer has no pad, unk or eos token to pad batches with",
        where="model.name",
        hint="use a tokenizer that defines an eos token",
    )


def _model_vocab_size(model_cfg: ModelConfig, files: ModelFiles) -> int | None:
    """The model's embedding rows from its config (None when the config does not say)."""
    from transformers import AutoConfig

    gguf = {"gguf_file": files.gguf_file} if files.gguf_file else {}
    try:
        with quiet_transformers():
            config = AutoConfig.from_pretrained(files.path, trust_remote_code=model_cfg.trust_remote_code, **gguf)
    except LOAD_ERRORS:
        return None
    text_config = getattr(config, "get_text_config", lambda: config)()
    size = getattr(text_config, "vocab_size", None)
    return size if isinstance(size, int) else None


def resolve_dtype(name: str) -> torch.dtype:
    """``auto``: float32 master weights on CPU; bfloat16 on a CUDA device that supports it."""
    if name == "auto":
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, name)


def load_model(model_cfg: ModelConfig, task: TaskInfo, **load_kwargs: Any):
    """Load ``model_cfg``'s weights with the head ``task`` asks for; returns a PreTrainedModel.

    ``load_kwargs`` go to ``from_pretrained`` (a method's quantization config, ``dtype`` to force
    one); ``tokenizer=`` may pass an already loaded tokenizer (its pad id goes into the config).
    Raises UserError when the head is unknown, an override names no config field, or loading fails.
    """
    silence_library_notices()  # before transformers / peft import bitsandbytes
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    if task.head not in HEADS:
        raise ValueError(f"unknown head '{task.head}', expected one of {HEADS}")
    if task.tasks:
        raise ValueError("several heads: load the encoder with lmforge.model.multihead.single_head, then build_multihead")
    tokenizer = load_kwargs.pop("tokenizer", None)
    if tokenizer is None:
        tokenizer = load_tokenizer(model_cfg)
    resolved = resolve_model(model_cfg)
    config = load_config(model_cfg, resolved.path, task)
    config.pad_token_id = tokenizer.pad_token_id
    auto = AutoModelForCausalLM if task.head == "causal_lm" else AutoModelForSequenceClassification
    kwargs = {"dtype": resolve_dtype(model_cfg.dtype), **load_kwargs}
    try:
        with quiet_transformers():
            model = auto.from_pretrained(
                resolved.path, config=config, trust_remote_code=model_cfg.trust_remote_code, **kwargs
            )
    except LOAD_ERRORS as exc:
        raise _load_error(model_cfg, "model", exc) from exc
    if getattr(model, "generation_config", None) is not None and tokenizer.pad_token_id is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def load_config(model_cfg: ModelConfig, path: Any, task: TaskInfo, gguf_file: str | None = None) -> Any:
    """The model's config with ``model_cfg.overrides`` and the task's label maps applied
    (``gguf_file``: read from that GGUF file's metadata in ``path``)."""
    from transformers import AutoConfig

    gguf = {"gguf_file": gguf_file} if gguf_file else {}
    try:
        with quiet_transformers():
            config = AutoConfig.from_pretrained(path, trust_remote_code=model_cfg.trust_remote_code, **gguf)
    except LOAD_ERRORS as exc:
        raise _load_error(model_cfg, "config", exc) from exc
    for key, value in model_cfg.overrides.items():
        if not hasattr(config, key):
            known = list(config.to_dict())
            raise UserError(
                f"'{key}' is not a field of this model's config{did_you_mean(key, known)}",
                where=f"model.overrides.{key}",
                hint=f"{type(config).__name__} fields include: {', '.join(sorted(known)[:25])}",
            )
        setattr(config, key, value)
    if "num_hidden_layers" in model_cfg.overrides:
        _trim_layer_lists(config, int(model_cfg.overrides["num_hidden_layers"]))
    if task.head == "sequence_classification":
        labels = list(task.labels) if task.labels else [str(i) for i in range(task.num_labels or 2)]
        config.num_labels = len(labels)
        config.id2label = dict(enumerate(labels))
        config.label2id = {label: i for i, label in enumerate(labels)}
    return config


def _trim_layer_lists(config: Any, layers: int) -> None:
    """Per-layer config lists (e.g. ``layer_types``) must match a reduced layer count."""
    for key in ("layer_types",):
        value = getattr(config, key, None)
        if isinstance(value, list) and len(value) > layers:
            setattr(config, key, value[:layers])


def _load_error(model_cfg: ModelConfig, what: str, exc: Exception) -> UserError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return UserError(
        f"could not load the {what} of model '{model_cfg.name}': {first}",
        where="model.name",
        hint="check that the folder holds a complete Hugging Face model (config.json, weights, tokenizer)",
    )
