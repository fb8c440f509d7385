"""One batch of prompts decoded together: left-padded prefill, then one token per live row per step.

The prefill uses transformers' public model API: ``model(input_ids, attention_mask,
position_ids, past_key_values, use_cache=True)``; so do the decode steps, except for the models the
lean step of :mod:`lmforge.model.fastdecode` covers on CPU (the same math in fewer ops; measured
there). Prompts are left-padded so every row's next
token sits in the last column; ``position_ids`` count only real tokens (``cumsum(mask) - 1``), so
a padded row computes what it would alone; the attention mask hides the padding. The KV cache is
the one the model creates at prefill (``DynamicCache`` for decoder-only transformers; hybrids
bring their own). A row that finishes (stop token, length, or its caller's stop) leaves the
batch: ``Cache.reorder_cache(kept rows)`` (transformers' public batch re-indexing, written for
beam search) drops its keys and values, so finished rows stop costing compute.

Precision: ``"model"`` runs in the weights' own dtype; ``"auto"`` runs fp32 weights under bf16
autocast on a bf16-capable CUDA GPU and in the weights' own dtype on CPU. On CPU autocast does not
pay for decoding: measured on an AMX Xeon (SmolLM2-135M, 32 new tokens, 2 threads), fp32 weights
decoded 23 tokens/s one prompt at a time and 85 in batches of 8; under bf16 autocast 18 and 113 while
the weights required grad (autocast caches their bf16 copies) and 8 and 61 with a frozen base (no
cache: every weight cast again at every step). Weights stored in bf16 (``serve.dtype: auto`` on such
CPUs) decode at 19 and 129.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Sequence

import torch

from lmforge.hardware import cpu_has_native_bf16
from lmforge.model.fastdecode import lean_decoder
from lmforge.model.sampling import Sampling, adjust_logits, next_tokens

OnToken = Callable[[int, int], "str | None"]
"""on_token(row, token) for every generated token that is not a stop id; returns a finish reason
(e.g. "stop" for a stop string, "cancelled") to end that row now, or None to go on."""
OnFinish = Callable[[int, "Generated"], None]
"""on_finish(row, generated) once per row, when it leaves the batch."""
OnPrefill = Callable[[list[int], Any, torch.Tensor, torch.Tensor], None]
"""on_prefill(rows, output, input_ids, attention_mask): the prefill forward's full output
(all positions' logits and hidden states), for per-prompt statistics."""
OnLogprob = Callable[[int, "TokenLogprob"], None]
"""on_logprob(row, entry) for every generated token of a row that asked for log-probabilities (not for
the stop id), just before ``on_token`` is called with the same token."""


@dataclass(frozen=True)
class TokenLogprob:
    """A chosen token's log-probability under the model and the ``top`` most likely tokens with theirs
    (most likely first, as many as the row asked for). From the log-softmax of the model's raw logits (in fp32):
    before temperature, top_p, penalties and logit bias, so they describe the model, not the sampler (as
    vLLM reports them by default)."""

    token: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


@dataclass
class Generated:
    """One row's result.

    tokens: new token ids, without the stop id that ended the row.
    finish_reason: "stop" (a stop id or a caller's stop), "length" (max_new_tokens reached), or
        the reason an ``on_token`` callback returned (e.g. "cancelled").
    stop_token: the stop id that ended the row, else None.
    logits: with ``keep_logits``, each step's fp32 next-token logits [vocab] (one per token of
        :attr:`all_tokens`), else empty.
    logprobs: when the row asked for log-probabilities, one :class:`TokenLogprob` per token of
        :attr:`tokens` (the stop id has none), else empty.
    prompt_logprobs: when the row asked for its prompt's log-probabilities, one per prompt token after the
        first (each given the tokens before it; the first has no context to be scored in), else empty.
    stop_logprob: when the row asked for log-probabilities and ended on a stop id, that id's, else None.
    """

    tokens: list[int] = field(default_factory=list)
    finish_reason: str = "length"
    stop_token: int | None = None
    logits: list[torch.Tensor] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    prompt_logprobs: list[TokenLogprob] = field(default_factory=list)
    stop_logprob: TokenLogprob | None = None

    @property
    def all_tokens(self) -> list[int]:
        """Every chosen token, the stop id included."""
        return self.tokens + ([self.stop_token] if self.stop_token is not None else [])


@dataclass(frozen=True)
class DecodeOptions:
    """What every row of a batch shares; per-row values are indexed by the caller's row number."""

    pad_id: int
    stop_ids: frozenset[int]
    max_new_tokens: Sequence[int]
    samplings: Sequence[Sampling]
    generators: Sequence[torch.Generator | None]
    keep_logits: bool = False
    on_token: OnToken | None = None
    on_finish: OnFinish | None = None
    on_prefill: OnPrefill | None = None
    logprobs: Sequence[int | None] | None = None  # per row: None, or how many top alternatives to record
    on_logprob: OnLogprob | None = None
    prompt_logprobs: Sequence[bool] | None = None  # per row: score the prompt's tokens too (with logprobs' k)

    def top_logprobs(self, row: int) -> int | None:
        """How many alternatives ``row`` records with each token's log-probability; None: no log-probabilities."""
        return None if self.logprobs is None else self.logprobs[row]


def decode_batch(model: Any, prompts: dict[int, Sequence[int]], opts: DecodeOptions) -> dict[int, Generated]:
    """Prefill ``prompts`` (row -> token ids) together and decode until every row finished.

    The model must already be in eval mode under ``no_grad`` (see ``generate_tokens``).
    Returns row -> :class:`Generated`.
    """
    rows = list(prompts)
    device = model_device(model)
    results = {r: Generated() for r in rows}
    ids, mask = left_pad([prompts[r] for r in rows], opts.pad_id, device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    stats = opts.on_prefill is not None
    scored = [r for r in rows if opts.prompt_logprobs is not None and opts.prompt_logprobs[r]]
    extra = {"output_hidden_states": True} if stats else ({} if scored else _last_logits_only(model))
    out = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True, **extra)
    if stats:
        opts.on_prefill(rows, out, ids, mask)
    for r in scored:
        i = rows.index(r)
        results[r].prompt_logprobs = prompt_token_logprobs(out.logits[i], ids[i], len(prompts[r]), opts.top_logprobs(r))
    cache, logits = out.past_key_values, out.logits[:, -1, :].float()
    del out
    lean = lean_decoder(model, cache)
    if lean is not None:  # the same math in fewer ops per step (lmforge.model.fastdecode); None: the forward
        lean.start(cache, extra=max(opts.max_new_tokens[r] for r in rows))
        cache = None
    live = rows
    adjusting = any(opts.samplings[r].adjusts for r in rows)  # decided once: the step loop stays lean without them
    scoring = any(opts.top_logprobs(r) is not None for r in rows)
    entries = [None] * len(rows)
    while True:
        samplings = [opts.samplings[r] for r in live]
        raw = logits
        if adjusting:
            logits = adjust_logits(logits, samplings, [prompts[r] for r in live], [results[r].tokens for r in live])
        tokens = next_tokens(logits, samplings, [opts.generators[r] for r in live])
        if scoring:
            entries = token_logprobs(raw, tokens, [opts.top_logprobs(r) for r in live])
        keep = [i for i, r in enumerate(live)
                if not _advance(results[r], r, int(tokens[i]), logits[i], opts, entries[i])]
        if not keep:
            return results
        if len(keep) < len(live):  # finished rows leave the batch and its cache
            index = torch.tensor(keep, device=device)
            if lean is not None:
                lean.keep(index)
            else:
                cache.reorder_cache(index)
            mask, positions, tokens = mask[index], positions[index], tokens[index]
            live = [live[i] for i in keep]
        mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=1)
        positions = positions[:, -1:] + 1
        if lean is not None:
            logits = lean.step(tokens, positions, mask)
            continue
        out = model(input_ids=tokens[:, None], attention_mask=mask, position_ids=positions,
                    past_key_values=cache, use_cache=True)
        cache, logits = out.past_key_values, out.logits[:, -1, :].float()
        del out


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, tops: Sequence[int | None]) -> list[TokenLogprob | None]:
    """Per row of ``logits`` [rows, vocab] (raw model logits): the :class:`TokenLogprob` of its chosen token
    ``tokens[row]`` with ``tops[row]`` alternatives, or None where ``tops[row]`` is None (no work for them)."""
    out: list[TokenLogprob | None] = [None] * len(tops)
    rows = [i for i, k in enumerate(tops) if k is not None]
    if not rows:
        return out
    index = torch.tensor(rows, device=logits.device)
    logp = torch.log_softmax(logits.index_select(0, index).float(), dim=-1)
    chosen = logp.gather(1, tokens.index_select(0, index).view(-1, 1).to(logp.device)).squeeze(1).tolist()
    widest = max(tops[i] for i in rows)
    best = logp.topk(min(widest, logp.shape[-1]), dim=-1) if widest else None
    for j, i in enumerate(rows):
        top = () if best is None else tuple(zip(best.indices[j, : tops[i]].tolist(), best.values[j, : tops[i]].tolist()))
        out[i] = TokenLogprob(int(tokens[i]), chosen[j], top)
    return out


def prompt_token_logprobs(logits: torch.Tensor, ids: torch.Tensor, length: int, top: int | None) -> list[TokenLogprob]:
    """The :class:`TokenLogprob` of each prompt token after the first, from one left-padded row of a forward's
    logits [width, vocab] over its ids [width] (the real ``length`` tokens at the end), with ``top`` alternatives."""
    width = ids.shape[0]
    if length < 2:
        return []
    before = logits[width - length: width - 1]  # position t scores the token at t + 1
    return token_logprobs(before, ids[width - length + 1:], [top or 0] * (length - 1))


def _advance(result: Generated, row: int, token: int, logits: torch.Tensor, opts: DecodeOptions,
             entry: TokenLogprob | None = None) -> bool:
    """Record one token for ``row`` (with its log-probability ``entry`` when the row asked for them); True when
    the row is finished (``on_finish`` was called)."""
    if opts.keep_logits:
        result.logits.append(logits.detach().cpu().clone())
    reason = None
    if token in opts.stop_ids:
        result.stop_token, result.stop_logprob, reason = token, entry, "stop"
    else:
        result.tokens.append(token)
        if entry is not None:
            result.logprobs.append(entry)
            if opts.on_logprob is not None:
                opts.on_logprob(row, entry)
        reason = opts.on_token(row, token) if opts.on_token is not None else None
        if reason is None and len(result.tokens) >= opts.max_new_tokens[row]:
            reason = "length"
    if reason is None:
        return False
    result.finish_reason = reason
    if opts.on_finish is not None:
        opts.on_finish(row, result)
    return True


def left_pad(prompts: Sequence[Sequence[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), both [rows, longest] long, prompts right-aligned."""
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, prompt in enumerate(prompts):
        if len(prompt):
            ids[i, width - len(prompt):] = torch.as_tensor(list(prompt), dtype=torch.long)
            mask[i, width - len(prompt):] = 1
    return ids.to(device), mask.to(device)


def _last_logits_only(model: Any) -> dict:
    """``logits_to_keep=1`` when the model accepts it: the prefill projects only the last position
    onto the vocabulary (a prompt of P tokens would otherwise cost P x hidden x vocab)."""
    base = model.get_base_model() if callable(getattr(model, "get_base_model", None)) else model
    try:
        accepts = "logits_to_keep" in inspect.signature(base.forward).parameters
    except (TypeError, ValueError):
        accepts = False
    return {"logits_to_keep": 1} if accepts else {}


def model_device(model: Any) -> torch.device:
    """The device of the model's first parameter (CPU when it has none)."""
    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError, TypeError):
        return torch.device("cpu")


def precision_context(model: Any, precision: str) -> ContextManager:
    """bf16 autocast for ``precision="auto"`` when the weights are fp32 and the model is on a CUDA device
    with bf16; a null context otherwise (``"model"``, and on CPU: the weights' own dtype; see the module
    doc for the CPU measurements)."""
    if precision not in ("auto", "model"):
        raise ValueError(f"precision must be 'auto' or 'model', got {precision!r}")
    device = model_device(model)
    try:
        fp32 = next(model.parameters()).dtype == torch.float32
    except (StopIteration, AttributeError, TypeError):
        fp32 = False
    if precision == "auto" and fp32 and device.type == "cuda" and native_bf16(device):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def native_bf16(device: torch.device) -> bool:
    """True where bf16 matmuls run natively: a CUDA GPU that supports bf16, or a CPU whose
    ``/proc/cpuinfo`` flags list ``amx_bf16`` or ``avx512_bf16`` (or torch reports AMX) with oneDNN
    allowed to use them (:mod:`lmforge.hardware`)."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    return cpu_has_native_bf16()
