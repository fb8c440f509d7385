"""``lmforge estimate`` for one run config, without loading the model's weights.

What the estimate needs, and where it comes from here:

- parameter counts: the run's model (config + ``model.overrides`` + the objective's head) built on
  the meta device (:func:`lmforge.model.meta.meta_model`: shapes, no storage) with the run's
  method applied to it, so LoRA targets, frozen layers, prompt tokens and heads are counted
  exactly as training would create them; a method that needs real weights to apply (QLoRA
  quantizes at load) offers ``apply_on_meta``;
- token lengths: a seeded sample of at most ``sample`` training records, encoded by the run's
  objective with the real tokenizer (tokenizer files only; a GGUF model's are read from its
  metadata, nothing is dequantized);
- precision and frozen-weight storage: the run's resolved ``runtime.precision`` and
  ``runtime.memory.base_dtype`` on this machine (the quantized base's bits for QLoRA);
- time: the step's FLOPs over this machine's measured matmul rate (:func:`measured_gflops`, with
  the run's threads) times the share of it a real training step reaches (``measured_utilization``,
  fitted on real runs: docs/performance.md);
- the head: a sequence classifier has no vocabulary logits (``classifier=True``); a causal-LM
  objective with a ``chunk_size`` projects labelled positions one chunk at a time.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from lmforge.train.estimate import Estimate, estimate, measured_utilization

SAMPLE = 2000  # training records tokenized for the length distribution


@dataclass
class RunEstimate:
    """The estimate plus what it was computed from (for the CLI's summary line)."""

    estimate: Estimate
    trainable_params: int
    total_params: int
    precision: str
    lengths: list[int]  # encoded lengths of the sampled training examples (before packing)
    records: int  # training records in the data (all of them, not only the sample)
    notes: list[str]  # what the sample lost or cut at data.max_length (lmforge.data.encode.length_note)


def estimate_run(config: Any, plan: Any, *, task_sections: list | None = None, sample: int = SAMPLE) -> RunEstimate:
    """Estimate peak memory and step time of the run ``config`` (validated into ``plan``).

    task_sections: for ``data.tasks`` runs, each task's resolved data section (the glue resolves
    them: ``lmforge.pipeline.multitask.task_sections``); their samples are pooled.

    Reads the data files, the tokenizer and the model config; never a weight file. Raises
    UserError for the same data / model problems ``lmforge train`` reports.
    """
    from lmforge.errors import UserError
    from lmforge.methods import build_method
    from lmforge.methods.base import count_parameters
    from lmforge.methods.peft_wrap import dropout_mask_elements, dropout_saved_elements
    from lmforge.model.load import load_tokenizer
    from lmforge.model.meta import meta_model
    from lmforge.model.source import resolve_model_files
    from lmforge.objectives import build_objective
    from lmforge.train.runtime import choose_device

    files = resolve_model_files(config.model)
    tokenizer = load_tokenizer(config.model, files)
    objective = build_objective(plan.objective.name, plan.objective_params)
    sections = _data_sections(config, task_sections)
    task, labels = _task(objective, plan, sections)
    method = build_method(plan.method.name, plan.method_params)
    model = meta_model(config.model, task, files)
    model = method.apply_on_meta(model, task)
    trainable, total = count_parameters(model)
    lengths, records, notes = _sample_lengths(objective, tokenizer, sections, labels, sample, config.run.seed)
    if not lengths:
        raise UserError("no training example is left after encoding", where="data.train",
                        hint="check data.max_length and that examples have a completion to train on")
    precision, frozen_bits = _storage(config, plan, method)
    device = choose_device(config.runtime.device)
    gflops = measured_gflops(precision, device, config.runtime.threads)
    chunk = getattr(plan.objective_params, "chunk_size", None)  # causal LM: loss on labelled positions, chunked
    est = estimate(
        model.config, None if trainable >= total else trainable, precision=precision,
        batch_size=config.train.batch_size, seq_lengths=lengths, packing=config.data.packing,
        activation_checkpointing=bool(config.runtime.memory.activation_checkpointing), frozen_bits=frozen_bits,
        max_length=config.data.max_length, grad_accumulation=config.train.grad_accum, optimizer=config.train.optimizer,
        classifier=task.head == "sequence_classification", total_params=total,
        chunked_loss=chunk is not None, chunk_size=int(chunk or 1024), dropout_elements=dropout_saved_elements(model),
        dropout_mask_elements=dropout_mask_elements(model),
        **({"peak_gflops": gflops, "utilization": measured_utilization(model.config, full=trainable >= 0.5 * total,
                                                                        precision=precision)}
           if gflops else {}),
    )
    return RunEstimate(est, trainable, total, precision, lengths, records, notes)


def _data_sections(config: Any, task_sections: list | None) -> list[tuple[Any, Any]]:
    """``[(data section, splits)]``: one per task for ``data.tasks``, else the run's data."""
    if config.data.tasks and task_sections:
        from lmforge.data.tasks import load_tasks

        return [(t.data, t.splits) for t in load_tasks(config.data.tasks, task_sections, config.run.seed)]
    from lmforge.data.splits import load_splits

    return [(config.data, load_splits(config.data, config.run.seed))]


def _task(objective: Any, plan: Any, sections: list) -> tuple[Any, list | None]:
    """The TaskInfo the run's model gets, and each section's label set (classification) or None."""
    from lmforge.data.encode import label_set

    if plan.objective.head != "sequence_classification":
        return objective.task_info(None), None
    labels = [label_set(splits.train + splits.validation + splits.test, data) for data, splits in sections]
    widest = max(labels, key=len)
    return objective.task_info(widest), labels


def _sample_lengths(objective: Any, tokenizer: Any, sections: list, labels: list | None, sample: int,
                    seed: int) -> tuple[list[int], int, list[str]]:
    """Token lengths of a seeded sample of the training records (split over the sections by size), the number
    of training records, and what the sample lost or cut at ``data.max_length``."""
    from lmforge.data.encode import length_note

    total = sum(len(splits.train) for _, splits in sections)
    rng = random.Random(seed)
    lengths: list[int] = []
    notes: list[str] = []
    for i, (data, splits) in enumerate(sections):
        share = min(len(splits.train), max(1, round(sample * len(splits.train) / max(total, 1))))
        chosen = rng.sample(list(splits.train), share) if share < len(splits.train) else list(splits.train)
        extra = {"labels": labels[i]} if labels else {}
        features = objective.encode(chosen, tokenizer, data, **extra)
        lengths += [len(f["input_ids"]) for f in features]
        note = length_note(features, len(chosen), data.max_length)
        notes += [note] if note else []
    return lengths, total, notes


def _storage(config: Any, plan: Any, method: Any) -> tuple[str, int]:
    """(compute precision, bits per frozen weight) as the run would resolve them on this machine."""
    from lmforge.train.precision import resolve_base_dtype
    from lmforge.train.runtime import choose_device, choose_precision

    precision = choose_precision(config.runtime.precision, choose_device(config.runtime.device))
    if plan.method_params.frozen_bits:
        return precision, plan.method_params.frozen_bits
    return precision, resolve_base_dtype(config.runtime.memory.base_dtype, precision).itemsize * 8


def measured_gflops(precision: str, device: Any, threads: int | None, size: int = 1024) -> float | None:
    """This machine's dense matmul rate right now, in GFLOP/s: the best of 5 products of two
    ``size`` x ``size`` matrices in the run's compute dtype on ``threads`` torch threads (the run's
    ``runtime.threads``; None: torch's default). A busy machine measures slower, as the run will be.
    None (use the nominal peaks) off CPU, or for bf16 where it is not native (emulated: minutes)."""
    import time

    import torch

    from lmforge.model.decode import native_bf16

    if device.type != "cpu" or (precision != "fp32" and not native_bf16(device)):
        return None
    dtype = torch.float32 if precision == "fp32" else torch.bfloat16
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        a @ b  # warm-up
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    return 2 * size**3 / best / 1e9
