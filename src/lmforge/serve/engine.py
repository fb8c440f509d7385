"""Batched generation: a worker thread groups waiting requests into one left-padded decode batch.

Requests (:class:`GenJob`) enter a queue; the worker takes up to ``max_batch_size`` jobs for the
same model/adapter (waiting ``batch_wait_ms`` for more), prefills them together, then decodes one
token per step for all live rows with a shared KV cache. Each row has its own temperature, top_p,
max_tokens, stop strings and stop token ids (eos + the chat template's end-of-turn). Text deltas
and the final result are handed to the job's ``emit`` callback (thread-safe by contract).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from lmforge.serve.sampling import next_tokens
from lmforge.serve.textstream import TextTracker


@dataclass
class GenJob:
    """One generation request. ``emit(kind, payload)``: ("delta", str) then ("done", dict)."""

    model: str
    prompt_ids: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    stops: list[str]
    emit: Callable[[str, Any], None]
    seed: int | None = None
    cancelled: bool = False
    enqueued: float = field(default_factory=time.monotonic)


class Engine:
    """Owns the worker thread. ``submit(job)`` is non-blocking; ``depth()`` is the queue length."""

    def __init__(self, store, max_batch_size: int = 8, batch_wait_ms: float = 5.0,
                 on_prefill: Callable[[GenJob, dict], None] | None = None):
        self.store = store
        self.max_batch, self.wait_s = max_batch_size, batch_wait_ms / 1000.0
        self.on_prefill = on_prefill
        self.on_batch: Callable[[int], None] | None = None  # called with each batch's size
        self.queue: queue.Queue[GenJob | None] = queue.Queue()
        self.pending: list[GenJob] = []
        tok = store.tokenizer
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        self.stop_ids = stop_token_ids(tok, store.model)
        self.thread = threading.Thread(target=self._run, name="lmforge-engine", daemon=True)
        self.thread.start()

    def submit(self, job: GenJob) -> None:
        self.queue.put(job)

    def depth(self) -> int:
        return self.queue.qsize() + len(self.pending)

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join(timeout=10)

    def _take_batch(self) -> list[GenJob] | None:
        """Block for one job, then gather more for the same model until full or the wait ends."""
        if not self.pending:
            job = self.queue.get()
            if job is None:
                return None
            self.pending.append(job)
        deadline = time.monotonic() + self.wait_s
        while len(self.pending) < 4 * self.max_batch:
            try:
                job = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is None:
                self.queue.put(None)
                break
            self.pending.append(job)
        first = self.pending[0].model
        batch = [j for j in self.pending if j.model == first and not j.cancelled][: self.max_batch]
        self.pending = [j for j in self.pending if j not in batch and not j.cancelled]
        return batch

    def _run(self) -> None:
        while True:
            batch = self._take_batch()
            if batch is None:
                return
            if not batch:
                continue
            if self.on_batch is not None:
                self.on_batch(len(batch))
            try:
                with self.store.lock, torch.inference_mode(), self.store.activate(batch[0].model):
                    self._generate(batch)
            except Exception as exc:  # a crashed batch must answer its clients, not kill the worker
                for job in batch:
                    job.emit("error", f"generation failed: {exc}")

    def _generate(self, jobs: list[GenJob]) -> None:
        """Prefill + decode ``jobs`` together; emits deltas and one "done" per job."""
        model, n = self.store.model, len(jobs)
        width = max(len(j.prompt_ids) for j in jobs)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        for i, j in enumerate(jobs):
            ids[i, width - len(j.prompt_ids):] = torch.tensor(j.prompt_ids)
            mask[i, width - len(j.prompt_ids):] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                    output_hidden_states=self.on_prefill is not None)
        if self.on_prefill is not None:
            for i, stats in enumerate(prefill_statistics(out, ids, mask, self.store.tokenizer)):
                self.on_prefill(jobs[i], stats)
        gens = [torch.Generator().manual_seed(j.seed) if j.seed is not None else None for j in jobs]
        trackers = [TextTracker(self.store.tokenizer, j.stops) for j in jobs]
        live = [True] * n
        cache, logits, step = out.past_key_values, out.logits[:, -1, :], 0
        while any(live):
            toks = next_tokens(logits, [j.temperature for j in jobs], [j.top_p for j in jobs], gens)
            step += 1
            for i, j in enumerate(jobs):
                if not live[i]:
                    continue
                reason = self._advance(j, trackers[i], int(toks[i]), step)
                if reason is not None:
                    live[i] = False
                    j.emit("done", {"finish_reason": reason, "text": trackers[i].text,
                                    "completion_tokens": trackers[i].count,
                                    "prompt_tokens": len(j.prompt_ids)})
            if not any(live):
                break
            mask = torch.cat([mask, torch.ones((n, 1), dtype=mask.dtype)], dim=1)
            pos = pos[:, -1:] + 1
            toks = toks.masked_fill(~torch.tensor(live), self.pad_id)
            out = model(input_ids=toks[:, None], attention_mask=mask, position_ids=pos,
                        past_key_values=cache, use_cache=True)
            cache, logits = out.past_key_values, out.logits[:, -1, :]

    def _advance(self, job: GenJob, tracker: TextTracker, token: int, step: int) -> str | None:
        """Feed one token to a row; returns a finish reason ("stop"/"length"/"cancelled") or None."""
        if job.cancelled:
            return "cancelled"
        if token in self.stop_ids:
            delta = tracker.flush()
            if delta:
                job.emit("delta", delta)
            return "stop"
        delta, hit_stop = tracker.add(token)
        if delta:
            job.emit("delta", delta)
        if hit_stop:
            return "stop"
        if step >= job.max_tokens:
            delta = tracker.flush()
            if delta:
                job.emit("delta", delta)
            return "length"
        return None


def stop_token_ids(tokenizer, model) -> set[int]:
    """eos ids of the tokenizer and generation config, plus end-of-turn tokens the vocab has."""
    ids: set[int] = set()
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in (tokenizer.eos_token_id, gen_eos):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, list):
            ids.update(v for v in value if isinstance(v, int))
    vocab = tokenizer.get_vocab()
    for marker in ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "</s>", "<|endoftext|>"):
        if marker in vocab and marker in (tokenizer.chat_template or "") + str(tokenizer.eos_token):
            ids.add(vocab[marker])
    return ids


def prefill_statistics(out, ids: torch.Tensor, mask: torch.Tensor, tokenizer) -> list[dict]:
    """Per row: prompt tokens, unk rate, perplexity of the prompt, mean-pooled last hidden state."""
    from lmforge.serve.drift import row_statistics

    hidden = out.hidden_states[-1] if out.hidden_states is not None else None
    return row_statistics(out.logits, hidden, ids, mask, tokenizer.unk_token_id)
