"""Batched generation: a worker thread groups waiting requests into one left-padded decode batch.

Requests (:class:`GenJob`) enter a queue; the worker takes up to ``max_batch_size`` jobs for the
same model/adapter (waiting ``batch_wait_ms`` for more) and hands them to lmforge's generation
engine (:func:`lmforge.model.generate.generate_tokens`): one batched prefill, then one token per
step for all live rows with a shared KV cache; finished rows leave the batch. Each row has its
own temperature, top_p, seed, max_tokens, stop strings and stop token ids (eos + the chat
template's end-of-turn). Text deltas and the final result are handed to the job's ``emit``
callback (thread-safe by contract); a job that asks for log-probabilities also gets each token's
(:class:`~lmforge.model.decode.TokenLogprob`, character offset) just before the text it produced.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from lmforge.model.generate import Generated, Sampling, TokenLogprob, generate_tokens, stop_token_ids
from lmforge.serve.textstream import TextTracker
from lmforge.train.threads import release_openmp_workers


@dataclass
class GenJob:
    """One generation request. ``emit(kind, payload)``: ("delta", str) then ("done", dict); with ``logprobs``
    (how many alternatives per token; None: none) also ("logprobs", (TokenLogprob, offset)) per token, before
    that token's text."""

    model: str
    prompt_ids: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    stops: list[str]
    emit: Callable[[str, Any], None]
    seed: int | None = None
    logprobs: int | None = None
    prompt_logprobs: bool = False  # with logprobs: score the prompt's tokens too (echo)
    adjust: dict = field(default_factory=dict)  # Sampling's penalties and logit_bias (lmforge.model.sampling)
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
        self.stop_ids = set(stop_token_ids(tok, store.model))
        # all generation runs on the worker thread: the loading thread's idle OpenMP workers would slow its ops
        release_openmp_workers()
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
            if self.queue.empty():  # idle: its OpenMP workers would slow other threads' ops (same reason as above)
                release_openmp_workers()

    def _generate(self, jobs: list[GenJob]) -> None:
        """Decode ``jobs`` together through lmforge's generation engine; emits deltas and one "done" per job."""
        tokenizer = self.store.tokenizer
        trackers = [TextTracker(tokenizer, j.stops) for j in jobs]
        entries: dict[int, TokenLogprob] = {}

        def on_logprob(row: int, entry: TokenLogprob) -> None:
            entries[row] = entry

        def on_token(row: int, token: int) -> str | None:
            if jobs[row].cancelled:
                return "cancelled"
            delta, hit_stop = trackers[row].add(token)
            if row in entries:
                jobs[row].emit("logprobs", (entries.pop(row), trackers[row].offsets[-1]))
            if delta:
                jobs[row].emit("delta", delta)
            return "stop" if hit_stop else None

        def on_finish(row: int, result: Generated) -> None:
            job, tracker = jobs[row], trackers[row]
            if result.stop_token is not None or result.finish_reason == "length":
                delta = tracker.flush()  # text held back for a stop string that never completed
                if delta:
                    job.emit("delta", delta)
            done = {"finish_reason": result.finish_reason, "text": tracker.text,
                    "completion_tokens": tracker.count, "prompt_tokens": len(job.prompt_ids)}
            if job.logprobs is not None:
                done.update(logprobs=result.logprobs, offsets=tracker.offsets, prompt_logprobs=result.prompt_logprobs,
                            stop_logprob=result.stop_logprob)
            job.emit("done", done)

        def on_prefill(rows: list[int], out, ids, mask) -> None:
            for row, stats in zip(rows, prefill_statistics(out, ids, mask, tokenizer)):
                self.on_prefill(jobs[row], stats)

        generate_tokens(
            self.store.model, [j.prompt_ids for j in jobs], max_new_tokens=[j.max_tokens for j in jobs],
            stop_ids=self.stop_ids, pad_id=self.pad_id, sampling=[Sampling(j.temperature, j.top_p, **j.adjust) for j in jobs],
            generators=[torch.Generator().manual_seed(j.seed) if j.seed is not None else None for j in jobs],
            batch_size=len(jobs), on_token=on_token, on_finish=on_finish,
            # the weights' own dtype (serve.dtype): under inference_mode autocast keeps no casts, so fp32 weights
            # were cast to bf16 at every step, 2.4x slower per stream than plain fp32 on an AMX CPU (RESULTS.md)
            precision="model", logprobs=[j.logprobs for j in jobs], on_logprob=on_logprob,
            prompt_logprobs=[j.prompt_logprobs for j in jobs],
            on_prefill=on_prefill if self.on_prefill is not None else None)


def prefill_statistics(out, ids: torch.Tensor, mask: torch.Tensor, tokenizer) -> list[dict]:
    """Per row: prompt tokens, unk rate, perplexity of the prompt, mean-pooled last hidden state."""
    from lmforge.serve.drift import row_statistics

    hidden = out.hidden_states[-1] if out.hidden_states is not None else None
    return row_statistics(out.logits, hidden, ids, mask, tokenizer.unk_token_id)
