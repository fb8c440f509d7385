"""Forgetting: score a general-domain set before and after training, so users see what was lost.

Two kinds of general set:
    text  ({"text"}: e.g. ``asset:wiki``)                 -> loss / perplexity per token
    qa    ({"question", "answers"}: ``asset:nq-open``, ``asset:boolq``) -> token F1 / exact match
          of the model's greedy answer (best over the accepted answers)

The pipeline calls :func:`load_forgetting_set` once (``eval.forgetting``), then
:func:`measure_forgetting` on the model before training and again after; :func:`compare_forgetting`
turns the two into a paired before -> after test on the same examples ("lost", "gained" or
"within noise"). torch is imported inside the functions so importing this module stays cheap.
"""

from __future__ import annotations

import json
import math
from typing import Any

from lmforge.errors import UserError
from lmforge.evaluate.textmetrics import exact_match, token_f1
from lmforge.evaluate.uncertainty import bootstrap_interval, paired_bootstrap

DEFAULT_EXAMPLES = 64
_MAX_TOKENS = 128  # general texts are cut to this many tokens (the check should stay cheap)


def load_forgetting_set(source: str, limit: int = DEFAULT_EXAMPLES) -> list[dict]:
    """The first ``limit`` usable records of a general-domain set.

    source: ``asset:wiki`` / ``asset:nq-open`` / ``asset:boolq`` (any ``asset:NAME`` of
    ``lmforge.data.assets``) or a JSONL file whose rows have ``text``, or ``question`` with
    ``answer`` / ``answers`` (a string or list), or BoolQ's ``question`` + ``passage`` + ``label``.
    Returns ``[{"text"}]`` or ``[{"question", "answers": [str]}]`` (one kind per set; rows that
    are neither, like unlabeled BoolQ rows or one-word texts, are skipped). Deterministic.
    Raises UserError for a missing file or a set with no usable row.
    """
    from lmforge.data.sources import source_path

    path = source_path(source)
    if not path.is_file():
        raise UserError("forgetting set not found", where="eval.forgetting",
                        hint="use asset:wiki (general text), asset:nq-open or asset:boolq (general QA), or a JSONL file")
    records: list[dict] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if len(records) >= limit:
                break
            line = line.strip()
            record = _general_record(json.loads(line)) if line else None
            if record is not None and (not records or set(record) == set(records[0])):
                records.append(record)
    if not records:
        raise UserError("the forgetting set has no usable row", where=f"eval.forgetting: {source}",
                        hint="rows need 'text', or 'question' with 'answer'/'answers', or 'question'+'passage'+'label'")
    return records


def _general_record(row: Any) -> dict | None:
    if not isinstance(row, dict):
        return None
    if isinstance(row.get("text"), str) and len(row["text"].split()) >= 3:
        return {"text": row["text"]}
    question = row.get("question")
    if not isinstance(question, str):
        return None
    if isinstance(row.get("label"), bool) and isinstance(row.get("passage"), str):
        return {"question": f"{row['passage']}\nQuestion: {question}? Answer yes or no.",
                "answers": ["yes" if row["label"] else "no"]}
    answers = row.get("answers", row.get("answer"))
    answers = [answers] if isinstance(answers, str) else answers
    if isinstance(answers, list) and answers and all(isinstance(a, str) for a in answers):
        return {"question": question, "answers": list(answers)}
    return None


def measure_forgetting(model: Any, tokenizer: Any, records: list[dict], *, max_new_tokens: int = 16,
                       batch_size: int = 8) -> dict:
    """Score ``model`` on a set from :func:`load_forgetting_set`.

    text sets: ``{"kind": "text", "general_loss": token-weighted mean CE (nats),
    "general_perplexity", "examples", "per_example": {"loss": [mean CE per text]}}``.
    qa sets: ``{"kind": "qa", "general_token_f1", "general_exact_match", "examples",
    "per_example": {"token_f1": [...], "exact_match": [...]}, "samples": [first 3 {"prompt",
    "reference", "output"}]}``. The model's train/eval mode is restored.
    """
    if not records:
        raise ValueError("measure_forgetting needs at least one record")
    if "text" in records[0]:
        return _measure_text(model, tokenizer, [r["text"] for r in records], batch_size)
    return _measure_qa(model, tokenizer, records, max_new_tokens)


def _measure_text(model: Any, tokenizer: Any, texts: list[str], batch_size: int) -> dict:
    import torch
    import torch.nn.functional as F

    from lmforge.evaluate.run import eval_mode, model_device

    device = model_device(model)
    sums: list[float] = []
    counts: list[int] = []
    with eval_mode(model), torch.no_grad():
        for start in range(0, len(texts), batch_size):
            rows = [tokenizer(t, truncation=True, max_length=_MAX_TOKENS)["input_ids"] for t in texts[start:start + batch_size]]
            width = max(len(r) for r in rows)
            ids = torch.tensor([r + [0] * (width - len(r)) for r in rows], device=device)
            mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=device)
            # prompt / p-tuning prepend virtual positions to the logits: keep the input's own
            logits = model(input_ids=ids, attention_mask=mask).logits[:, -ids.shape[1]:][:, :-1].float()
            targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
            ce = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=-100, reduction="none")
            sums += ce.sum(dim=1).tolist()
            counts += (targets != -100).sum(dim=1).tolist()
    kept = [(s, c) for s, c in zip(sums, counts) if c > 0]
    if not kept:
        raise UserError("the general texts are too short to score (one token each)", where="eval.forgetting")
    loss = sum(s for s, _ in kept) / sum(c for _, c in kept)
    return {
        "kind": "text",
        "general_loss": loss,
        "general_perplexity": math.exp(loss) if loss < 700 else math.inf,
        "examples": len(kept),
        "per_example": {"loss": [s / c for s, c in kept]},
    }


def _measure_qa(model: Any, tokenizer: Any, records: list[dict], max_new_tokens: int) -> dict:
    from lmforge.evaluate.generate import generate_replies

    f1, em, samples = [], [], []
    outputs = generate_replies(model, tokenizer, [[{"role": "user", "content": r["question"]}] for r in records],
                               max_new_tokens)
    for record, output in zip(records, outputs):
        f1.append(max(token_f1(output, a) for a in record["answers"]))
        em.append(max(exact_match(output, a) for a in record["answers"]))
        if len(samples) < 3:
            samples.append({"prompt": record["question"], "reference": " | ".join(record["answers"]), "output": output})
    return {
        "kind": "qa",
        "general_token_f1": sum(f1) / len(f1),
        "general_exact_match": sum(em) / len(em),
        "examples": len(records),
        "per_example": {"token_f1": f1, "exact_match": em},
        "samples": samples,
    }


def compare_forgetting(before: dict, after: dict, *, source: str | None = None, seed: int = 0) -> dict:
    """Paired before -> after test of a general set measured twice by :func:`measure_forgetting`.

    Returns ``{"source", "metric", "before": interval dict, "after": interval dict, "difference",
    "low", "high", "p_value", "within_noise", "verdict", "sentence"}``; ``metric`` is
    ``loss`` (lower is better) for text and ``token_f1`` for QA; ``verdict`` is "lost",
    "gained" or "within noise". Raises ValueError when the two were measured on different sets.
    """
    metric = "loss" if before.get("kind") == "text" else "token_f1"
    a, b = before["per_example"][metric], after["per_example"][metric]
    if len(a) != len(b) or before.get("kind") != after.get("kind"):
        raise ValueError("before and after forgetting scores come from different sets")
    test = paired_bootstrap(a, b, seed=seed)
    worse = test.difference > 0 if metric == "loss" else test.difference < 0
    verdict = "within noise" if test.within_noise else ("lost" if worse else "gained")
    p_text = "p<0.001" if test.p_value < 0.001 else f"p={test.p_value:.3g}"
    name = f"general {metric}" + (" (lower is better)" if metric == "loss" else "")
    sentence = (f"Forgetting check on {source or 'the general set'} ({len(a)} examples): {name} "
                f"{sum(a) / len(a):.4g} -> {sum(b) / len(b):.4g} ({test.difference:+.4g}, {p_text}): "
                + {"lost": "the model lost general ability.", "gained": "the model improved on general data.",
                   "within noise": "no change beyond noise."}[verdict])
    return {
        "source": source,
        "metric": metric,
        "before": bootstrap_interval(a, seed=seed).to_dict(),
        "after": bootstrap_interval(b, seed=seed).to_dict(),
        "difference": test.difference,
        "low": test.low,
        "high": test.high,
        "p_value": test.p_value,
        "within_noise": test.within_noise,
        "verdict": verdict,
        "sentence": sentence,
    }

