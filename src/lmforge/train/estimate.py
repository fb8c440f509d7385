"""Predict peak memory and time per optimizer step of a run before launching it, without loading its weights.

An analytic model, calibrated against measured peak RSS on this machine kind (the numbers and
the method are in docs/performance.md; re-run ``benchmarks/calibrate_estimate.py`` after a
change of torch/transformers). Memory of one process, in bytes:

- weights: trainable parameters in fp32, frozen ones in their storage precision (fp32, bf16, or
  4-bit NF4 for QLoRA at ~4.5 bits with block scales);
- grads: trainable x 4; optimizer: AdamW m and v = trainable x 8 (fp32), or ~2.03 bytes with the
  bitsandbytes 8-bit AdamW (``train.optimizer: adamw_8bit``; uint8 m and v + block scales);
- frozen base weights in bf16 (``runtime.memory.base_dtype``, the default under bf16 for a frozen
  base) count 2 bytes: ``frozen_bits=16``;
- activations: tokens x layers x (A_H x hidden + A_I x intermediate) elements saved for
  backward, in the compute precision; with activation checkpointing only each layer's input is
  kept, plus one layer's full activations during its recompute; LoRA dropout (p > 0) adds each
  adapted layer's dropped-out input and its mask (``dropout_elements`` per token) in peft's layers,
  only the 1-byte mask in lmforge's fused ones (``dropout_mask_elements``);
- logits: tokens x vocab x LOGIT_COPIES x 4 bytes (logits, log-softmax, their gradient), or one
  chunk of labelled positions when the loss is chunked (``objectives/causal_lm/chunked.py``);
  none for a sequence classifier (``classifier=True``: batch x labels logits, negligible);
- framework: the Python process with torch + transformers loaded, plus a share of the weights
  for load-time copies.

Time: training FLOPs (6 x matmul params x tokens for full fine-tuning, 4 x for a frozen base,
+2 x when activations are recomputed, + attention) divided by the achieved rate
``peak_gflops x utilization``; packing changes the token count from padded to real tokens.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

# Calibrated constants (docs/performance.md, "Estimator calibration").
A_H = 10.0  # fp32 activation elements saved per token per layer, per unit of hidden size
A_I = 4.0  # ... per unit of intermediate (MLP) size (measured 11.8k elements/token/layer, SmolLM2)
ACT_PRECISION = {"fp32": 1.0, "bf16": 0.7, "fp16": 0.7, "int8": 1.0}  # bytes vs fp32 (norms/residuals stay fp32)
ACT_FROZEN = 0.86  # frozen base (LoRA family): no inputs saved for frozen weight grads
BACKWARD_TRANSIENT = 3.0  # layer-activations' worth of gradient buffers alive in backward (fit)
OPT_TEMP_COPIES = 0.0  # trainable-sized fp32 temporaries during the step: none with fused AdamW (train/optim.py)
LOGIT_COPIES = 3.5  # fp32 tokens x vocab tensors alive at the loss peak (logits, log-softmax, grad)
FRAMEWORK_BYTES = 460e6  # RSS of a process with torch + transformers + peft imported, first step run
LOAD_COPY_FRACTION = 0.25  # share of the weights' bytes left in RSS by loading (page cache, copies)
DEFAULT_PEAK_GFLOPS = {"fp32": 400.0, "bf16": 2600.0, "fp16": 400.0, "int8": 530.0}  # int8: measured step 1.33x fp32
DEFAULT_UTILIZATION = 0.3  # achieved / peak matmul rate of a training step (HF reaches ~0.15)
# achieved rate of a real lmforge training step / the 1024^3 matmul rate measured on the same
# machine with the same threads (lmforge estimate measures that rate). Fitted on real runs (docs/performance.md): a frozen base
# (LoRA family) reaches less of it than full fine-tuning, its adapter dropout, small adapter matmuls
# and elementwise work weigh more against 4 instead of 6 passes of big matmuls. Refitted 2026-12-06 on
# an idle 2-core Intel Xeon after the fused LoRA layer and packed attention (SmolLM2 LoRA 0.54 / 0.62,
# full 0.71). A model with attention dropout (BERT-style encoders) materialises and drops out its
# attention probabilities in every layer, elementwise work the matmul rate does not see: the MiniLM
# classifier's LoRA steps reached 0.32 (0.58 x 0.55).
MEASURED_UTILIZATION = {"full": 0.65, "frozen": 0.58}
# The same shares under bf16 on a CPU with AMX (2026-12-06, idle 2-core Xeon with amx_bf16, 1 thread):
# AMX multiplies 1024^3 bf16 matrices at ~1000-1160 GFLOP/s on one thread, 3.5x fp32's rate, but a
# training step's elementwise work, attention, casts and small matmuls do not speed up with it, so a step
# reaches a far smaller share of that rate (SmolLM2 LoRA 0.13, full 0.20, MiniLM classifier LoRA 0.075 =
# 0.13 x the attention-dropout factor). Fitted on those three runs; the bf16 GPU path is not calibrated.
MEASURED_UTILIZATION_BF16 = {"full": 0.20, "frozen": 0.13}
# bf16 on a CPU with AVX512-BF16 dot products but no AMX (2026-12-06, idle 2-core AMD EPYC, a Zen 5 core, 1
# thread): its bf16 probe (~450-480 GFLOP/s on one thread) is ~2x fp32's, and a step keeps a larger share of it
# than on AMX: SmolLM2 LoRA 0.43, full 0.50, MiniLM classifier LoRA 0.22 (= 0.43 x 0.52, the attention-dropout
# factor within 6%). With AMX's shares these steps were estimated 2.5-3.3x too slow.
MEASURED_UTILIZATION_BF16_NO_AMX = {"full": 0.50, "frozen": 0.43}
ATTENTION_DROPOUT_UTILIZATION = 0.55


def measured_utilization(config: Any, full: bool, precision: str = "fp32", amx: bool | None = None) -> float:
    """The share of the measured matmul rate a training step of this model reaches in ``precision``
    (fitted above; bf16 has its own shares, on CPUs with AMX (``amx``; None: this CPU's flags) and without,
    every other precision uses fp32's)."""
    shape = model_shape(config)
    if precision == "bf16":
        if amx is None:
            from lmforge.hardware import cpu_has_amx

            amx = cpu_has_amx()
        table = MEASURED_UTILIZATION_BF16 if amx else MEASURED_UTILIZATION_BF16_NO_AMX
    else:
        table = MEASURED_UTILIZATION
    share = table["full" if full else "frozen"]
    return share * (ATTENTION_DROPOUT_UTILIZATION if shape.attn_dropout > 0 else 1.0)
BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "int8": 1}
# train.optimizer -> (state bytes per trainable parameter, trainable-sized fp32 temporaries in the step)
OPTIMIZER_STATE = {"adamw": (8.0, OPT_TEMP_COPIES), "adamw_8bit": (2.03, 0.0), "paged_adamw_8bit": (2.03, 0.0)}
FROZEN_BYTES = {32: 4.0, 16: 2.0, 8: 1.06, 4: 0.5625}  # 8/4-bit include block scales


@dataclass(frozen=True)
class ModelShape:
    """The sizes of a transformer stack that memory and FLOPs depend on."""

    hidden: int
    layers: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int
    head_dim: int
    tied: bool = True
    gated: bool = True  # SwiGLU-style MLP (3 matrices) vs. 2 matrices
    params: int | None = None  # counted on the built (meta-device) model; None: from the sizes above
    attn_dropout: float = 0.0  # > 0: training materialises attention probabilities (BERT-style models)
    hidden_dropout: float = 0.0  # > 0: two dropped-out hidden states per layer are saved with masks

    @property
    def layer_params(self) -> int:
        """Parameters of one block (attention + MLP + norms)."""
        attn = 2 * self.hidden * self.head_dim * (self.heads + self.kv_heads)
        mlp = (3 if self.gated else 2) * self.hidden * self.intermediate
        return attn + mlp + 2 * self.hidden

    @property
    def total_params(self) -> int:
        if self.params is not None:
            return self.params
        embed = self.vocab * self.hidden * (1 if self.tied else 2)
        return self.layers * self.layer_params + embed + self.hidden


def model_shape(config: Any) -> ModelShape:
    """ModelShape from a transformers config (or any object/dict with the same attribute names)."""
    get = config.get if isinstance(config, dict) else lambda k, d=None: getattr(config, k, d)
    if hasattr(config, "get_text_config"):
        text = config.get_text_config()
        get = lambda k, d=None: getattr(text, k, d)  # noqa: E731
    hidden = int(get("hidden_size"))
    heads = int(get("num_attention_heads"))
    model_type = str(get("model_type", "llama"))
    return ModelShape(
        hidden=hidden,
        layers=int(get("num_hidden_layers")),
        intermediate=int(get("intermediate_size") or 4 * hidden),
        vocab=int(get("vocab_size")),
        heads=heads,
        kv_heads=int(get("num_key_value_heads") or heads),
        head_dim=int(get("head_dim") or hidden // heads),
        tied=bool(get("tie_word_embeddings", True)),
        gated=model_type not in {"bert", "roberta", "distilbert", "gpt2", "xlm-roberta", "electra"},
        attn_dropout=float(_first(get, ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop"))),
        hidden_dropout=float(_first(get, ("hidden_dropout_prob", "hidden_dropout", "resid_pdrop"))),
    )


def _first(get: Any, keys: tuple[str, ...]) -> float:
    """The first of ``keys`` the config sets to a number, else 0."""
    for key in keys:
        value = get(key, None)
        if isinstance(value, (int, float)):
            return value
    return 0.0


@dataclass(frozen=True)
class EstimateInputs:
    """Everything an estimate depends on (``suggest`` varies these and re-estimates)."""

    shape: ModelShape
    trainable_params: int
    precision: str = "fp32"  # compute precision: fp32 | bf16 (autocast) | fp16
    frozen_bits: int = 32  # storage of frozen base weights: 32 | 16 | 8 | 4
    batch_size: int = 1
    seq_lengths: tuple[int, ...] = (512,)
    max_length: int | None = None  # packing row length / truncation; default longest example
    packing: bool = False
    activation_checkpointing: bool = False
    chunked_loss: bool = False
    chunk_size: int = 1024
    n_processes: int = 1
    grad_accumulation: int = 1
    peak_gflops: float | None = None
    utilization: float = DEFAULT_UTILIZATION
    shared_compute: bool = True  # processes share one CPU (True) or each has a device (False)
    optimizer: str = "adamw"  # train.optimizer: adamw | adamw_8bit | paged_adamw_8bit
    classifier: bool = False  # a sequence-classification head: no vocabulary logits, no LM-head matmul
    dropout_elements: int = 0  # per token, all layers: inputs that adapter dropout saves (LoRA, p > 0)
    dropout_mask_elements: int = 0  # per token, all layers: 1-byte masks lmforge's fused LoRA dropout saves


@dataclass
class Estimate:
    """Predicted peak memory (all processes on the machine) and time per optimizer step.

    ``breakdown`` holds the size of each component in one process; they are not all alive at
    once (activations + logits peak in backward, grads + step temporaries in the optimizer
    step), so ``peak_bytes`` is less than their sum.
    """

    peak_bytes: float
    time_per_step_s: float
    tokens_per_step: float  # real (non-pad) tokens per optimizer step
    breakdown: dict[str, float]  # bytes of ONE process by component
    inputs: EstimateInputs = field(repr=False)

    def summary(self) -> str:
        """Human-readable multi-line summary."""
        lines = [
            f"peak memory   {self.peak_bytes / 2**30:.2f} GiB",
            f"time / step   {self.time_per_step_s:.2f} s",
        ]
        lines += [f"  {k:<12}{v / 2**20:10.1f} MiB" for k, v in self.breakdown.items()]
        return "\n".join(lines)


def estimate(
    model_config: Any,
    trainable_params: int | None = None,
    precision: str = "fp32",
    batch_size: int = 1,
    seq_lengths: list[int] | tuple[int, ...] = (512,),
    packing: bool = False,
    activation_checkpointing: bool = False,
    n_processes: int = 1,
    total_params: int | None = None,
    **options: Any,
) -> Estimate:
    """Estimate peak memory and step time of a training run.

    Args:
        model_config: transformers config, dict of its fields, or a ``ModelShape``.
        trainable_params: trainable parameter count (None = full fine-tuning: all parameters).
        precision: "fp32" | "bf16" | "fp16" | "int8" compute precision (int8: fp32 with an int8 copy of the
            frozen weights).
        batch_size: examples (or packed rows when ``packing``) per micro-batch per process.
        seq_lengths: token lengths of the real training examples.
        packing: padding-free packing (``lmforge.data.packing``).
        activation_checkpointing: recompute every layer's activations in backward.
        n_processes: data-parallel processes on this machine.
        total_params: the model's parameter count when known (counted on the meta-device model);
            None: computed from the config's sizes.
        **options: other ``EstimateInputs`` fields (frozen_bits, max_length, chunked_loss,
            grad_accumulation, peak_gflops, utilization, shared_compute, chunk_size, optimizer;
            ``frozen_bits=16`` for a bf16 frozen base).

    Returns:
        An ``Estimate``; ``peak_bytes`` sums all processes, ``breakdown`` is per process.
    """
    shape = model_config if isinstance(model_config, ModelShape) else model_shape(model_config)
    if total_params is not None:
        shape = dataclasses.replace(shape, params=int(total_params))
    if not seq_lengths:
        raise ValueError("seq_lengths is empty: estimate needs the lengths of the real examples")
    if precision not in BYTES:
        raise ValueError(f"precision must be one of {sorted(BYTES)}, got {precision!r}")
    inputs = EstimateInputs(
        shape=shape,
        trainable_params=shape.total_params if trainable_params is None else int(trainable_params),
        precision=precision,
        batch_size=batch_size,
        seq_lengths=tuple(int(n) for n in seq_lengths),
        packing=packing,
        activation_checkpointing=activation_checkpointing,
        n_processes=n_processes,
        **options,
    )
    return estimate_inputs(inputs)


def estimate_inputs(x: EstimateInputs) -> Estimate:
    """The estimate for fully specified inputs (see ``estimate``)."""
    s = x.shape
    max_len = x.max_length or max(x.seq_lengths)
    peak_tokens, computed_tokens, real_tokens = _micro_batch_tokens(x, max_len)
    frozen = max(s.total_params - x.trainable_params, 0)
    weights = x.trainable_params * 4.0 + frozen * FROZEN_BYTES[x.frozen_bits]
    if x.precision == "int8":  # int8 copy of the frozen weights beside the fp32 ones, for the whole run
        weights += frozen * 1.0
    full = x.trainable_params >= 0.5 * s.total_params
    act_bytes = 4.0 * ACT_PRECISION[x.precision] * (1.0 if full else ACT_FROZEN)
    per_layer = peak_tokens * (A_H * s.hidden + A_I * s.intermediate) * act_bytes
    per_layer += _dropout_bytes(x, peak_tokens, max_len)
    kept_layers = 0 if x.activation_checkpointing else s.layers
    inputs_kept = peak_tokens * s.hidden * 4.0 * s.layers if x.activation_checkpointing else 0.0
    activations = inputs_kept + per_layer * (kept_layers + BACKWARD_TRANSIENT)
    if not x.activation_checkpointing:  # dropped-out adapter inputs (compute precision) + 1-byte masks
        activations += peak_tokens * (x.dropout_elements * (4.0 * ACT_PRECISION[x.precision] + 1.0)
                                      + x.dropout_mask_elements)
    loss_tokens = min(peak_tokens, x.chunk_size) if x.chunked_loss else peak_tokens
    breakdown = {
        "weights": weights,
        "grads": x.trainable_params * 4.0,
        "optimizer": x.trainable_params * OPTIMIZER_STATE[x.optimizer][0],
        "activations": activations,
        "logits": 0.0 if x.classifier else loss_tokens * s.vocab * 4.0 * LOGIT_COPIES,
        "framework": FRAMEWORK_BYTES + LOAD_COPY_FRACTION * weights,
    }
    # Two phases peak separately: the start of backward (activations + logits alive, optimizer
    # state from the previous step, the output-projection grad already allocated) and the
    # optimizer step (all grads + state + any optimizer temporaries). Autocast keeps a
    # low-precision copy of every fp32 (trainable) weight for the whole forward/backward.
    cast_cache = x.trainable_params * BYTES[x.precision] if x.precision not in ("fp32", "int8") else 0.0
    head_grad = s.vocab * s.hidden * 4.0 if full and not x.classifier else 0.0  # LM-head grad, early in backward
    backward_peak = activations + breakdown["logits"] + head_grad + cast_cache
    temp_copies = OPTIMIZER_STATE[x.optimizer][1]
    step_peak = breakdown["grads"] * (1 + temp_copies)
    breakdown["step_temporaries"] = breakdown["grads"] * temp_copies
    if x.n_processes > 1:  # DDP gradient buckets: one more copy of the trainable grads
        breakdown["ddp_buckets"] = breakdown["grads"]
    fixed = weights + breakdown["optimizer"] + breakdown["framework"] + breakdown.get("ddp_buckets", 0.0)
    peak = (fixed + max(backward_peak, step_peak)) * x.n_processes
    flops = _step_flops(x, computed_tokens, max_len) * x.grad_accumulation * x.n_processes
    rate = (x.peak_gflops or DEFAULT_PEAK_GFLOPS[x.precision]) * 1e9 * x.utilization
    if not x.shared_compute:
        rate *= x.n_processes
    tokens = real_tokens * x.grad_accumulation * x.n_processes
    return Estimate(peak, flops / rate, tokens, breakdown, x)


def _dropout_bytes(x: EstimateInputs, tokens: float, max_len: int) -> float:
    """Per layer, what the model's own dropout keeps for backward in training: with attention
    dropout the attention probabilities are materialised (scores, probabilities, dropped-out
    copy in the compute precision + a 1-byte mask, per head and key), with hidden dropout two
    dropped-out hidden states and their masks."""
    s, elem = x.shape, 4.0 * ACT_PRECISION[x.precision]
    out = 0.0
    if s.attn_dropout > 0:
        rows = x.batch_size if not x.packing else tokens / max_len
        length = tokens / max(rows, 1)
        out += rows * s.heads * length * length * (3 * elem + 1.0)
    if s.hidden_dropout > 0:
        out += 2 * tokens * s.hidden * (elem + 1.0)
    return out


def _micro_batch_tokens(x: EstimateInputs, max_len: int) -> tuple[float, float, float]:
    """(tokens in the largest micro-batch, mean computed tokens, mean real tokens) per micro-batch."""
    lengths = [min(n, max_len) for n in x.seq_lengths]
    mean_len = sum(lengths) / len(lengths)
    if x.packing:
        per_row = max_len * min(1.0, _fill(lengths, max_len))
        real = per_row * x.batch_size
        return float(max_len * x.batch_size), real, real
    # padded batches in data order: the worst batch sets the peak, the mean sets the time
    batches = [lengths[i : i + x.batch_size] for i in range(0, len(lengths), x.batch_size)]
    padded = [max(b) * x.batch_size for b in batches]
    return float(max(padded)), sum(padded) / len(padded), mean_len * x.batch_size


def _fill(lengths: list[int], max_len: int) -> float:
    """Fraction of a packed row holding real tokens (best-fit decreasing, as in data.packing)."""
    from lmforge.data.packing import pack_features

    sample = lengths[:4096]
    rows = pack_features([{"input_ids": [0] * n, "labels": [0] * n} for n in sample], max_len)
    return sum(sample) / (len(rows) * max_len) if rows else 1.0


def _step_flops(x: EstimateInputs, tokens: float, max_len: int) -> float:
    """Training FLOPs of one micro-batch in one process."""
    s = x.shape
    full = x.trainable_params >= 0.5 * s.total_params
    matmul = s.layers * (s.layer_params - 2 * s.hidden)
    passes = (6.0 if full else 4.0) + (2.0 if x.activation_checkpointing else 0.0)
    body = passes * matmul * tokens
    context = max_len / 2 if x.packing else sum(x.seq_lengths) / len(x.seq_lengths) / 2
    attention = passes * 2 * s.layers * s.heads * s.head_dim * context * tokens
    head_passes = 8.0 if x.chunked_loss else 6.0  # chunked recomputes the projection in backward
    head = 0.0 if x.classifier else head_passes * s.vocab * s.hidden * tokens
    return body + attention + head + 2 * x.trainable_params * 8  # + optimizer, negligible


@dataclass
class Suggestion:
    change: str
    estimate: Estimate


def suggest(current: Estimate, budget_bytes: float) -> list[Suggestion]:
    """Changes to the run that bring the predicted peak under ``budget_bytes``, fastest first.

    Tries single changes (bf16, packing, chunked loss, activation checkpointing, smaller
    micro-batch with more gradient accumulation, LoRA, QLoRA) and, if none fits alone, their
    cumulative combination in that order. Returns [] when the current estimate already fits
    or nothing found fits.
    """
    if current.peak_bytes <= budget_bytes:
        return []
    base = current.inputs
    singles = [(name, dataclasses.replace(base, **change)) for name, change in _candidates(base)]
    fits = [Suggestion(n, estimate_inputs(i)) for n, i in singles]
    fits = [f for f in fits if f.estimate.peak_bytes <= budget_bytes]
    if not fits:
        fits = _combine(base, budget_bytes)
    return sorted(fits, key=lambda f: f.estimate.time_per_step_s)


def _combine(base: EstimateInputs, budget_bytes: float) -> list[Suggestion]:
    """Apply the levers cumulatively (then keep halving the micro-batch) until the run fits."""
    combined, names = base, []
    while True:
        levers = _candidates(combined)
        if not levers:
            return []
        name, change = levers[0]
        combined = dataclasses.replace(combined, **change)
        names.append(name)
        result = estimate_inputs(combined)
        if result.peak_bytes <= budget_bytes:
            return [Suggestion(" + ".join(names), result)]


def _candidates(x: EstimateInputs) -> list[tuple[str, dict]]:
    """(description, EstimateInputs changes) of memory levers not yet used by ``x``."""
    out: list[tuple[str, dict]] = []
    partial = x.trainable_params < x.shape.total_params
    if x.precision == "fp32":
        frozen = 16 if x.frozen_bits == 32 and partial else x.frozen_bits
        change = {"precision": "bf16", "frozen_bits": frozen}
        out.append(("runtime.precision: bf16 (autocast; frozen base kept in bf16)", change))
    elif x.frozen_bits == 32 and partial:
        out.append(("runtime.memory.base_dtype: bfloat16 (frozen base stored in bf16)", {"frozen_bits": 16}))
    if not x.packing:
        out.append(("data.packing: true", {"packing": True}))
    if not x.chunked_loss:
        out.append(("chunked loss (labelled positions only)", {"chunked_loss": True}))
    if not x.activation_checkpointing:
        out.append(("runtime.memory.activation_checkpointing: true (all layers)", {"activation_checkpointing": True}))
    if x.optimizer == "adamw":
        out.append(("train.optimizer: adamw_8bit (8-bit AdamW state)", {"optimizer": "adamw_8bit"}))
    if x.batch_size > 1:
        half = max(1, x.batch_size // 2)
        accum = x.grad_accumulation * math.ceil(x.batch_size / half)
        change = {"batch_size": half, "grad_accumulation": accum}
        out.append((f"train.batch_size: {half} with train.grad_accum: {accum}", change))
    lora = _lora_params(x.shape, rank=16)
    if x.trainable_params > 2 * lora:
        change = {"trainable_params": lora, "frozen_bits": 16 if x.precision != "fp32" else 32}
        out.append(("method.name: lora (r=16, all linear layers)", change))
    if x.frozen_bits > 4:
        change = {"trainable_params": min(lora, x.trainable_params), "frozen_bits": 4}
        out.append(("method.name: qlora (4-bit NF4 base, r=16)", change))
    return out


def _lora_params(shape: ModelShape, rank: int) -> int:
    """LoRA parameters of rank ``rank`` on every linear layer of the blocks."""
    h, i = shape.hidden, shape.intermediate
    q, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    pairs = [(h, q), (h, kv), (h, kv), (q, h)] + [(h, i), (i, h)] + ([(h, i)] if shape.gated else [])
    return shape.layers * sum(rank * (a + b) for a, b in pairs)
