"""The one generation engine: evaluation samples and metrics, export parity, compare, GRPO rollouts
and the server all decode through :func:`generate_tokens`.

``generate_tokens(model, prompts, ...)`` sorts the prompts by length, cuts them into batches of
``batch_size``, and decodes each batch with a KV cache (:mod:`lmforge.model.decode`): one batched
prefill, then one forward of one token per live row per step; rows that finish leave the batch.
Each row stops on any stop id (eos and the chat template's end-of-turn token:
:func:`stop_token_ids`), after its ``max_new_tokens``, or when its ``on_token`` callback says so
(stop strings, cancellation). Greedy rows are deterministic; sampled rows draw from their own
``torch.Generator`` or from torch's global RNG (so a seeded run repeats).

PEFT prompt-learning wrappers (prompt / prefix / p-tuning) prepend virtual tokens on every forward
and cannot continue from an outside cache; for them the engine calls ``model.generate`` (which
PEFT overrides for exactly this), batch by batch, with the same stops.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch

from lmforge import progress
from lmforge.model.decode import (DecodeOptions, Generated, OnFinish, OnLogprob, OnPrefill, OnToken, TokenLogprob,
                                  decode_batch, model_device, precision_context, prompt_token_logprobs, token_logprobs)
from lmforge.model.sampling import GREEDY, Sampling, adjust_logits

# End-of-turn tokens of common chat templates, used when they are in the vocabulary.
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<end_of_turn>", "<|end|>")
_MARKER = "lmforge-end-of-turn-probe"

__all__ = ["END_OF_TURN", "GREEDY", "Generated", "Sampling", "TokenLogprob", "generate_tokens", "stop_token_ids",
           "template_end_of_turn"]


def generate_tokens(model: Any, prompts: Sequence[Sequence[int]], *, max_new_tokens: int | Sequence[int],
                    stop_ids: Iterable[int] = (), pad_id: int | None = None,
                    sampling: Sampling | Sequence[Sampling] = GREEDY,
                    generators: Sequence[torch.Generator | None] | None = None, batch_size: int = 8,
                    precision: str = "auto", keep_logits: bool = False, on_token: OnToken | None = None,
                    on_finish: OnFinish | None = None, on_prefill: OnPrefill | None = None,
                    logprobs: int | None | Sequence[int | None] = None,
                    on_logprob: OnLogprob | None = None,
                    prompt_logprobs: bool | Sequence[bool] = False) -> list[Generated]:
    """Generate a continuation of every prompt; returns one :class:`Generated` per prompt, in order.

    model: a causal LM (transformers, possibly PEFT-wrapped) on any device; it runs in eval mode
        without gradients, and its train/eval mode is restored afterwards.
    prompts: token ids per prompt (no padding). max_new_tokens: one for all, or one per prompt.
    stop_ids: token ids that end a row (the id is reported as ``stop_token``, not in ``tokens``).
    pad_id: the id written into padding (masked; default the first stop id, else 0).
    sampling / generators: one for all or one per prompt (default greedy; generators default to
        torch's global RNG).
    batch_size: prompts decoded together (they are sorted by length first, longest first, so a
        batch pads little); the results come back in the caller's order.
    precision: "auto" (bf16 autocast on a bf16 GPU, see :mod:`lmforge.model.decode`) or "model"
        (the weights' own dtype; parity checks use this).
    keep_logits: record each step's fp32 logits (parity checks compare them).
    on_token / on_finish / on_prefill / on_logprob: callbacks with the caller's row index (see the types in
        :mod:`lmforge.model.decode`).
    logprobs: one for all or one per prompt: None records nothing; k >= 0 records each generated token's
        log-probability and its k most likely alternatives (:class:`TokenLogprob`, in ``Generated.logprobs``).
    prompt_logprobs: one for all or one per prompt: also score each prompt token after the first the same way
        (``Generated.prompt_logprobs``; from the prefill's logits at every position, so no second pass).
    """
    n = len(prompts)
    limits = _per_row(max_new_tokens, n, "max_new_tokens")
    samplings = _per_row(sampling, n, "sampling")
    gens = list(generators) if generators is not None else [None] * n
    if len(gens) != n:
        raise ValueError(f"generators has {len(gens)} entries for {n} prompts")
    tops = [logprobs] * n if logprobs is None or isinstance(logprobs, int) else list(logprobs)
    if len(tops) != n:
        raise ValueError(f"logprobs has {len(tops)} entries for {n} prompts")
    scored = [prompt_logprobs] * n if isinstance(prompt_logprobs, bool) else list(prompt_logprobs)
    if len(scored) != n:
        raise ValueError(f"prompt_logprobs has {len(scored)} entries for {n} prompts")
    stops = frozenset(int(s) for s in stop_ids)
    if pad_id is None:
        pad_id = min(stops) if stops else 0
    results: dict[int, Generated] = {}
    todo = [i for i in range(n) if limits[i] > 0]
    for i in set(range(n)) - set(todo):  # nothing to generate
        results[i] = Generated()
        if on_finish is not None:
            on_finish(i, results[i])
    todo.sort(key=lambda i: -len(prompts[i]))
    with contextlib.ExitStack() as stack:
        if progress.current() is not None:  # a run's phase: show the token budget being used up
            tick = stack.enter_context(progress.bar(sum(limits[i] for i in todo), "tokens", "answers"))
            on_token, on_finish = _counting(tick, limits, on_token, on_finish)
        opts = DecodeOptions(pad_id=pad_id, stop_ids=stops, max_new_tokens=limits, samplings=samplings, generators=gens,
                             keep_logits=keep_logits, on_token=on_token, on_finish=on_finish, on_prefill=on_prefill,
                             logprobs=tops if any(k is not None for k in tops) else None, on_logprob=on_logprob,
                             prompt_logprobs=scored if any(scored) else None)
        _decode_all(model, prompts, todo, opts, results, batch_size, precision)
    return [results[i] for i in range(n)]


def _decode_all(model: Any, prompts: Sequence[Sequence[int]], todo: list[int], opts: DecodeOptions,
                results: dict[int, Generated], batch_size: int, precision: str) -> None:
    """Decode the rows ``todo`` (longest prompts first) in batches of ``batch_size`` into ``results``."""
    with _generation_mode(model), precision_context(model, precision):
        for start in range(0, len(todo), max(1, batch_size)):
            chunk = {i: prompts[i] for i in todo[start:start + max(1, batch_size)]}
            if _needs_hf_generate(model):
                results.update(_hf_generate(model, chunk, opts))
            else:
                results.update(decode_batch(model, chunk, opts))


def _counting(tick: Callable[[int], None], limits: list[int], on_token: OnToken | None,
              on_finish: OnFinish | None) -> tuple[OnToken, OnFinish]:
    """The caller's callbacks, also ticking the progress bar: one per token, and a row's unused budget
    when it finishes (so the bar ends full and its ETA is an upper bound)."""
    def token(row: int, value: int) -> str | None:
        tick(1)
        return on_token(row, value) if on_token is not None else None

    def finish(row: int, result: Generated) -> None:
        tick(max(0, limits[row] - len(result.tokens)))
        if on_finish is not None:
            on_finish(row, result)

    return token, finish


def _per_row(value: Any, n: int, name: str) -> list:
    if isinstance(value, (int, Sampling)):
        return [value] * n
    values = list(value)
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} entries for {n} prompts")
    return values


@contextlib.contextmanager
def _generation_mode(model: Any) -> Iterator[None]:
    """Eval mode without gradients (not inference mode: GRPO trains the same model right after,
    and lazily updated buffers such as dynamic RoPE frequencies must stay usable by autograd)."""
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _needs_hf_generate(model: Any) -> bool:
    """PEFT prompt-learning wrappers cannot continue from a cache built outside ``generate``."""
    config = getattr(model, "active_peft_config", None)
    return bool(getattr(config, "is_prompt_learning", False))


def _hf_generate(model: Any, prompts: dict[int, Sequence[int]], opts: DecodeOptions) -> dict[int, Generated]:
    """The same contract through ``model.generate``, one call per distinct sampling setting (torch's
    global RNG; per-row generators and ``keep_logits`` are not available on this path; log-probabilities
    are, from ``generate``'s raw per-step logits)."""
    results: dict[int, Generated] = {}
    for sampling in dict.fromkeys(opts.samplings[r] for r in prompts):
        rows = [r for r in prompts if opts.samplings[r] == sampling]
        results.update(_hf_generate_rows(model, {r: prompts[r] for r in rows}, sampling, opts))
    return results


def _hf_generate_rows(model: Any, prompts: dict[int, Sequence[int]], sampling: Sampling,
                      opts: DecodeOptions) -> dict[int, Generated]:
    from lmforge.model.decode import left_pad

    rows = list(prompts)
    tops = [opts.top_logprobs(r) for r in rows]
    ids, mask = left_pad([prompts[r] for r in rows], opts.pad_id, model_device(model))
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max(opts.max_new_tokens[r] for r in rows),
                         do_sample=not sampling.greedy, temperature=None if sampling.greedy else sampling.temperature,
                         top_p=None if sampling.greedy else sampling.top_p, top_k=None,
                         logits_processor=_adjusting(sampling, [prompts[r] for r in rows], ids.shape[1]),
                         eos_token_id=sorted(opts.stop_ids) or None, pad_token_id=opts.pad_id,
                         # the raw logits of every step (before the sampler's processing), for log-probabilities
                         output_logits=any(k is not None for k in tops), return_dict_in_generate=True)
    new = out.sequences[:, ids.shape[1]:]
    scored = [r for r in rows if opts.prompt_logprobs is not None and opts.prompt_logprobs[r]]
    # the prompt's own scores need the logits at every prompt position: one forward (prompt-learning models prepend
    # their virtual tokens, so the prompt's positions are the last ones)
    prompt_logits = model(input_ids=ids, attention_mask=mask).logits[:, -ids.shape[1]:] if scored else None
    results = {}
    for i, r in enumerate(rows):
        result = Generated()
        if r in scored:
            result.prompt_logprobs = prompt_token_logprobs(prompt_logits[i], ids[i], len(prompts[r]), tops[i])
        for step, token in enumerate(new[i].tolist()[: opts.max_new_tokens[r]]):
            entry = None if tops[i] is None else token_logprobs(out.logits[step][i:i + 1], new[i, step:step + 1],
                                                                [tops[i]])[0]
            if token in opts.stop_ids:
                result.stop_token, result.stop_logprob, result.finish_reason = token, entry, "stop"
                break
            result.tokens.append(token)
            if entry is not None:
                result.logprobs.append(entry)
                if opts.on_logprob is not None:
                    opts.on_logprob(r, entry)
            reason = opts.on_token(r, token) if opts.on_token is not None else None
            if reason is not None:
                result.finish_reason = reason
                break
        if opts.on_finish is not None:
            opts.on_finish(r, result)
        results[r] = result
    return results


def _adjusting(sampling: Sampling, prompts: list[Sequence[int]], width: int) -> Any:
    """The row's penalties and bias as a transformers logits processor (run before temperature and top_p, as
    :func:`lmforge.model.sampling.adjust_logits` runs in lmforge's own decode loop); None when it has none."""
    from transformers import LogitsProcessor, LogitsProcessorList

    if not sampling.adjusts:
        return None

    class Adjust(LogitsProcessor):
        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            answers = input_ids[:, width:].tolist()
            return adjust_logits(scores, [sampling] * len(answers), prompts, answers)

    return LogitsProcessorList([Adjust()])


def stop_token_ids(tokenizer: Any, model: Any = None) -> list[int]:
    """Token ids that end an assistant turn: eos (tokenizer and model generation config), the
    special token the chat template puts right after an assistant message, and the known
    end-of-turn tokens of :data:`END_OF_TURN` present in the vocabulary. Sorted, unique."""
    ids: set[int] = set()
    for value in (getattr(tokenizer, "eos_token_id", None),
                  getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        ids.update(_as_ids(value))
    vocab = tokenizer.get_vocab() if hasattr(tokenizer, "get_vocab") else {}
    for token in (*END_OF_TURN, template_end_of_turn(tokenizer)):
        if token and token in vocab:
            ids.add(int(vocab[token]))
    return sorted(ids)


def template_end_of_turn(tokenizer: Any) -> str | None:
    """The special token the chat template writes right after an assistant message, if any."""
    if not getattr(tokenizer, "chat_template", None):
        return None
    from lmforge.data.chat import render_chat

    convo = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": _MARKER}]
    try:
        text = render_chat(tokenizer, convo)
    except Exception:  # a template may refuse this probe conversation
        return None
    at = text.find(_MARKER)
    if at < 0:
        return None
    rest = text[at + len(_MARKER):].lstrip()
    specials = sorted(getattr(tokenizer, "all_special_tokens", []) or [], key=len, reverse=True)
    return next((s for s in specials if s and rest.startswith(s)), None)


def _as_ids(value: Any) -> list[int]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [int(v) for v in value if v is not None]
    return [int(value)]
