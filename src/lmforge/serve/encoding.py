"""Embeddings (mean pooling of the last hidden state) and sequence classification endpoints."""

from __future__ import annotations

import asyncio
import base64
import time

import numpy as np
import torch
from starlette.responses import JSONResponse

from lmforge.serve.apierror import APIError
from lmforge.serve.drift import row_statistics
from lmforge.serve.protocol import ClassifyRequest, EmbeddingRequest


CHUNK = 32  # inputs per forward pass: padding to the longest input stays bounded (memory)


def _inputs(state, texts: str | list[str]) -> list[str]:
    """The request's texts; 400 naming ``input.<i>`` for an empty one or one longer than the limit
    (``limits.max_prompt_tokens``, or the model's positions when fewer)."""
    items = [texts] if isinstance(texts, str) else list(texts)
    lim = min(state.cfg.limits.max_prompt_tokens, state.max_positions or state.cfg.limits.max_prompt_tokens)
    for i, t in enumerate(items):
        where = "input" if isinstance(texts, str) else f"input.{i}"
        if not t:
            raise APIError(400, f"{where}: must be a non-empty string", "invalid_input", where)
        if len(state.store.tokenizer(t)["input_ids"]) > lim:
            raise APIError(400, f"{where}: longer than {lim} tokens", "context_length_exceeded", where)
    return items


def _forward(state, model_name: str, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor | None, list[dict]]:
    """-> (pooled [B, H], class logits [B, C] or None, per-row statistics), CHUNK texts per pass
    (one at a time when the tokenizer has no pad token). Runs under the store lock."""
    store = state.store
    size = CHUNK if store.tokenizer.pad_token is not None else 1
    pooled, logits, stats = [], [], []
    for at in range(0, len(texts), size):
        enc = store.tokenizer(texts[at:at + size], padding=size > 1, return_tensors="pt")
        with store.lock, torch.inference_mode(), store.activate(model_name):
            out = store.model(**enc, output_hidden_states=True)
        hidden = out.hidden_states[-1]
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).float())
        if store.kind == "classifier":
            logits.append(out.logits)
        stats += row_statistics(None, hidden, enc["input_ids"], enc["attention_mask"], store.tokenizer.unk_token_id)
    return torch.cat(pooled), (torch.cat(logits) if logits else None), stats


async def _run(state, fn):
    """Run ``fn`` in a thread once the request has its turn; 504 past request_timeout_s (waiting included)."""
    deadline = time.monotonic() + state.cfg.limits.request_timeout_s
    async with state.admission.turn(deadline):
        try:
            return await asyncio.wait_for(asyncio.to_thread(fn), max(0.001, deadline - time.monotonic()))
        except asyncio.TimeoutError:
            raise APIError(504, "request timed out", "timeout") from None


def _record(state, model: str, stats: list[dict], labels: list[str] | None = None) -> None:
    if state.recorder is None:
        return
    for i, rec in enumerate(stats):
        state.recorder.record({**rec, **({"label": labels[i]} if labels else {})}, model)


async def embeddings(state, req: EmbeddingRequest) -> JSONResponse:
    """OpenAI /v1/embeddings: float lists, or base64 float32 when encoding_format == "base64"."""
    texts = _inputs(state, req.input)
    pooled, _, stats = await _run(state, lambda: _forward(state, req.model, texts))
    _record(state, req.model, stats)
    data = []
    for i, vec in enumerate(pooled.numpy()):
        emb = (base64.b64encode(vec.astype("<f4").tobytes()).decode() if req.encoding_format == "base64"
               else [float(v) for v in vec])
        data.append({"object": "embedding", "index": i, "embedding": emb})
    tokens = sum(s["input_tokens"] for s in stats)
    return JSONResponse({"object": "list", "data": data, "model": req.model,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


async def classify(state, req: ClassifyRequest) -> JSONResponse:
    """/v1/classify: per input the top label and the probability of every label."""
    if state.store.kind != "classifier":
        raise APIError(400, "this model is not a sequence classifier", "not_a_classifier", "model")
    texts = _inputs(state, req.input)
    _, logits, stats = await _run(state, lambda: _forward(state, req.model, texts))
    id2label = state.store.model.config.id2label or {}
    probs = torch.softmax(logits.float(), -1).numpy()
    names = [str(id2label.get(j, j)) for j in range(probs.shape[1])]
    data = [{"index": i, "label": names[int(np.argmax(p))],
             "probabilities": {n: float(v) for n, v in zip(names, p)}} for i, p in enumerate(probs)]
    _record(state, req.model, stats, [d["label"] for d in data])
    tokens = sum(s["input_tokens"] for s in stats)
    return JSONResponse({"object": "list", "data": data, "model": req.model, "created": int(time.time()),
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})
