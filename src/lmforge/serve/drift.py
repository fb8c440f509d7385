"""Traffic statistics for drift monitoring: per-input signals, the training baseline, the window file.

Signals per input (one record each, identical for training texts and served requests):
  input_tokens  number of prompt tokens
  unk_rate      fraction of prompt tokens that are the tokenizer's unk token (0 if it has none)
  perplexity    the model's own perplexity on the prompt (causal LMs only, else absent)
  embedding     mean-pooled last hidden state over the prompt's tokens (list[float])
  label         predicted label (classifiers only)
Chat inputs are rendered with the chat template (add_generation_prompt=True), exactly as the
server renders them, so baseline and traffic are measured the same way.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch

from lmforge import progress
from lmforge.atomic import atomic_write_text

MAX_EMBEDDINGS = 256
MAX_SCALARS = 5000
SCALARS = ("input_tokens", "unk_rate", "perplexity")


def row_statistics(lm_logits: torch.Tensor | None, hidden: torch.Tensor | None, ids: torch.Tensor,
                   mask: torch.Tensor, unk_id: int | None) -> list[dict]:
    """ids/mask [B, T]; lm_logits [B, T', V] or None; hidden [B, T', H] or None -> one dict per row.

    T' >= T: prompt-learning methods (prompt tuning, p-tuning) prepend their virtual tokens to the
    model's outputs, so the first T' - T positions are dropped and only the input's own tokens count.
    """
    rows = []
    lm_logits, hidden = input_positions(lm_logits, ids.shape[1]), input_positions(hidden, ids.shape[1])
    m = mask.bool()
    nll = None
    if lm_logits is not None and ids.shape[1] > 1:
        logp = torch.log_softmax(lm_logits[:, :-1].float(), dim=-1)
        nll = -logp.gather(-1, ids[:, 1:, None]).squeeze(-1)
        pair = m[:, 1:] & m[:, :-1]
    for i in range(ids.shape[0]):
        n = int(m[i].sum())
        rec: dict[str, Any] = {"input_tokens": n}
        rec["unk_rate"] = float((ids[i][m[i]] == unk_id).float().mean()) if unk_id is not None and n else 0.0
        if nll is not None and int(pair[i].sum()) > 0:
            rec["perplexity"] = float(torch.exp(nll[i][pair[i]].mean()))
        if hidden is not None and n:
            rec["embedding"] = [round(float(v), 5) for v in hidden[i][m[i]].float().mean(0)]
        rows.append(rec)
    return rows


def input_positions(output: torch.Tensor | None, length: int) -> torch.Tensor | None:
    """``output`` [B, T', ...] cut to its last ``length`` positions (the input's tokens; virtual tokens
    of prompt / p-tuning come first). ValueError when it is shorter than the input."""
    if output is None or output.shape[1] == length:
        return output
    if output.shape[1] < length:
        raise ValueError(f"model output covers {output.shape[1]} positions, the input has {length}")
    return output[:, output.shape[1] - length:]


def _head(model) -> str:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    name = type(base).__name__
    if name.endswith("ForCausalLM"):
        return "causal"
    return "classifier" if name.endswith("ForSequenceClassification") else "encoder"


def render_input(tokenizer, item: str | list[dict], head: str) -> list[int]:
    """Token ids of one input as the server sees it (chat messages through the chat template)."""
    if isinstance(item, list):
        text = tokenizer.apply_chat_template(item, tokenize=False, add_generation_prompt=True)
        return tokenizer(text, add_special_tokens=False)["input_ids"]
    return tokenizer(item)["input_ids"]


@torch.inference_mode()
def text_statistics(model, tokenizer, texts: list, batch_size: int = 8, max_length: int = 512) -> list[dict]:
    """Per-input records (see module doc) for strings or chat message lists, in input order."""
    head, records = _head(model), []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    labels = getattr(model.config, "id2label", None) or {}
    with progress.bar(len(texts), "inputs", "input statistics") as tick:
        for start in range(0, len(texts), batch_size):
            seqs = [render_input(tokenizer, t, head)[:max_length] for t in texts[start:start + batch_size]]
            width = max(len(s) for s in seqs)
            ids = torch.full((len(seqs), width), pad, dtype=torch.long)
            mask = torch.zeros_like(ids)
            for i, s in enumerate(seqs):  # causal: left padding like the server's batches; encoders: right
                at = width - len(s) if head == "causal" else 0
                ids[i, at:at + len(s)], mask[i, at:at + len(s)] = torch.tensor(s, dtype=torch.long), 1
            kw = {"position_ids": (mask.cumsum(-1) - 1).clamp(min=0)} if head == "causal" else {}
            out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True, **kw)
            lm = out.logits if head == "causal" else None
            rows = row_statistics(lm, out.hidden_states[-1], ids, mask, tokenizer.unk_token_id)
            if head == "classifier":
                for rec, cls in zip(rows, out.logits.argmax(-1).tolist()):
                    rec["label"] = str(labels.get(cls, cls))
            records.extend(rows)
            tick(len(seqs))
    return records


def summarize(records: list[dict], seed: int = 0) -> dict:
    """Records -> {"n", "scalars": {signal: [values]}, "embeddings": [[...]], "labels": {label: count}}.

    Scalars keep up to 5000 values and embeddings up to 256 rows (seeded subsample).
    """
    import random

    rng = random.Random(seed)
    scalars = {}
    for key in SCALARS:
        vals = [float(r[key]) for r in records if r.get(key) is not None]
        scalars[key] = rng.sample(vals, MAX_SCALARS) if len(vals) > MAX_SCALARS else vals
    embs = [r["embedding"] for r in records if r.get("embedding")]
    embs = rng.sample(embs, MAX_EMBEDDINGS) if len(embs) > MAX_EMBEDDINGS else embs
    labels = Counter(str(r["label"]) for r in records if r.get("label") is not None)
    return {"n": len(records), "scalars": {k: v for k, v in scalars.items() if v},
            "embeddings": embs, "labels": dict(labels)}


def compute_baseline(model, tokenizer, texts: list, batch_size: int = 8) -> dict:
    """The training-data baseline: ``summarize`` of ``text_statistics`` plus metadata (JSON-able).

    texts: training inputs (strings, or chat message lists without the final answer).
    """
    if not texts:
        raise ValueError("compute_baseline needs at least one text")
    base = summarize(text_statistics(model, tokenizer, texts, batch_size))
    return {"version": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "head": _head(model), **base}


def save_baseline(path: str | Path, baseline: dict) -> Path:
    return atomic_write_text(path, json.dumps(baseline))


class DriftRecorder:
    """Appends one JSON line per request to ``path``; trims to the last ``window_size`` lines.

    Thread-safe. A record is a :func:`row_statistics` dict plus "ts" and "model".
    """

    def __init__(self, path: str | Path, window_size: int = 1000):
        self.path, self.window = Path(path), window_size
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.Lock()
        self.count = len(read_window(self.path)) if self.path.exists() else 0

    def record(self, stats: dict, model: str) -> None:
        line = json.dumps({"ts": round(time.time(), 3), "model": model, **stats})
        with self.lock:
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(line + "\n")
            self.count += 1
            if self.count >= 2 * self.window:
                kept = self.path.read_text(encoding="utf-8").splitlines()[-self.window:]
                atomic_write_text(self.path, "\n".join(kept) + "\n")
                self.count = len(kept)


def read_window(path: str | Path, last: int | None = None, model: str | None = None) -> list[dict]:
    """Records of a window file (optionally only the last ``last``, only one ``model``)."""
    recs = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                recs.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut by a crash mid-write
                continue
    if model is not None:
        recs = [r for r in recs if r.get("model") == model]
    return recs[-last:] if last else recs
