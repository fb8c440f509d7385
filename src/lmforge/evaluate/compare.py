"""Prompting vs RAG vs fine-tuning, measured on the same held-out QA / chat examples.

Systems (each answers every held-out example with the same generate function):
    base zero-shot, base few-shot, base + <retriever> (RAG), fine-tuned, fine-tuned + <retriever>.
Per system: quality (exact match, token F1, ROUGE-L with bootstrap intervals), latency per query
(retrieval included), prompt tokens per query and memory. Paired tests against a reference system
say which differences are within noise; a recommendation sentence is built from those numbers
(see ``lmforge.evaluate.recommend``). The result is a report dict for ``write_html_report``.
"""

from __future__ import annotations

import json
import random
import resource
import statistics
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from lmforge import progress
from lmforge.atomic import atomic_write_text
from lmforge.data.messages import prompt_messages, reference_text
from lmforge.evaluate.recommend import recommend
from lmforge.evaluate.retrieval import BM25Retriever, DenseRetriever, messages_with_context
from lmforge.evaluate.textmetrics import per_example_scores
from lmforge.evaluate.uncertainty import bootstrap_interval, paired_bootstrap

GenerateFn = Callable[[Any, Any, list, int], list]
"""generate_replies(model, tokenizer, conversations, max_new_tokens) -> one reply text per conversation
(``lmforge.evaluate.generate.generate_replies``: batched, KV cache)."""

QUALITY_METRICS = ("token_f1", "rougeL", "exact_match")


def document_from_record(record: dict) -> str:
    """A training example as a retrievable passage: 'Question: <last user turn>\\nAnswer: <answer>'."""
    return f"Question: {_question(prompt_messages(record))}\nAnswer: {reference_text(record)}"


def _question(messages: Sequence[dict]) -> str:
    users = [m["content"] for m in messages if m.get("role") == "user"]
    return users[-1] if users else ""


def few_shot_messages(messages: Sequence[dict], shots: Sequence[dict]) -> list[dict]:
    """``messages`` with each shot's prompt/answer inserted as user/assistant turns after any system turn."""
    system = [dict(m) for m in messages if m.get("role") == "system"]
    rest = [dict(m) for m in messages if m.get("role") != "system"]
    demo = []
    for shot in shots:
        demo += [m for m in prompt_messages(shot) if m.get("role") != "system"]
        demo.append({"role": "assistant", "content": reference_text(shot)})
    return system + demo + rest


def load_tuned(model_or_path: Any, tokenizer: Any = None) -> tuple[Any, Any]:
    """A (model, tokenizer) pair from a model object or a saved folder (full model or peft adapter)."""
    if not isinstance(model_or_path, (str, Path)):
        return model_or_path, tokenizer
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(model_or_path)
    model = AutoModelForCausalLM.from_pretrained(path)
    return model.eval(), tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(path)


def count_prompt_tokens(tokenizer: Any, messages: Sequence[dict]) -> int:
    """Tokens in the rendered prompt (chat template with generation prompt, else contents joined)."""
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
    else:
        text = "\n".join(m["content"] for m in messages)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def weights_mb(*models: Any) -> float:
    """Megabytes held by the parameters and buffers of ``models`` (objects without them count 0)."""
    total = 0
    for model in models:
        for tensors in (getattr(model, "parameters", None), getattr(model, "buffers", None)):
            if callable(tensors):
                total += sum(t.numel() * t.element_size() for t in tensors())
    return total / 2**20


def _peak_memory_mb() -> float:
    """CUDA: peak allocated since the last reset. CPU: the process's peak RSS (monotonic)."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _build_retrievers(names: Sequence[str], documents: list[str], dense_encoder: Any) -> dict:
    retrievers = {}
    for name in names:
        if name == "bm25":
            retrievers[name] = BM25Retriever(documents)
        elif name == "dense":
            retrievers[name] = (
                dense_encoder
                if isinstance(dense_encoder, DenseRetriever)
                else DenseRetriever.from_pretrained(documents, dense_encoder)
            )
        else:
            raise ValueError(f"unknown retriever {name!r}; choose from 'bm25', 'dense'")
    return retrievers


def _systems(base, tuned, retrievers: dict, shots: list[dict]) -> list[dict]:
    """The systems to run: name, (model, tokenizer), shots, retriever name or None."""
    plan = [{"name": "base zero-shot", "pair": base, "shots": [], "retriever": None}]
    if shots:
        plan.append({"name": f"base {len(shots)}-shot", "pair": base, "shots": shots, "retriever": None})
    plan += [{"name": f"base + {r} RAG", "pair": base, "shots": [], "retriever": r} for r in retrievers]
    if tuned is not None:
        plan.append({"name": "fine-tuned", "pair": tuned, "shots": [], "retriever": None})
        plan += [{"name": f"fine-tuned + {r} RAG", "pair": tuned, "shots": [], "retriever": r} for r in retrievers]
    return plan


def _run_system(system: dict, examples: list[dict], retrievers: dict, *, generate_fn, top_k, max_new_tokens, documents):
    """Answer every example with one system; returns outputs, latencies (s), prompt token counts, memory.

    All of a system's questions go to ``generate_fn`` at once (it batches them); a query's latency
    is its own retrieval time plus an equal share of the generation time (cost per query).
    """
    import torch

    model, tokenizer = system["pair"]
    retriever = retrievers.get(system["retriever"]) if system["retriever"] else None
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    conversations, latency, prompt_tokens = [], [], []
    for ex in examples:
        start = time.perf_counter()
        messages = ex["messages"]
        if retriever is not None:
            hits = retriever.search(_question(messages), k=top_k)
            messages = messages_with_context(messages, [documents[i] for i, _ in hits])
        if system["shots"]:
            messages = few_shot_messages(messages, system["shots"])
        conversations.append(messages)
        latency.append(time.perf_counter() - start)
        prompt_tokens.append(count_prompt_tokens(tokenizer, messages))
    start = time.perf_counter()
    with torch.no_grad():
        outputs = list(generate_fn(model, tokenizer, conversations, max_new_tokens))
    share = (time.perf_counter() - start) / max(len(examples), 1)
    encoder = getattr(retriever, "model", None)
    return {
        "outputs": outputs,
        "latency_s": [t + share for t in latency],
        "prompt_tokens": prompt_tokens,
        "weights_mb": weights_mb(model, encoder),
        "peak_mb": _peak_memory_mb(),
    }


def run_compare(
    base_model: Any,
    tokenizer: Any,
    eval_records: Sequence[dict],
    *,
    generate_fn: GenerateFn,
    train_records: Sequence[dict] = (),
    documents: Sequence[str] | None = None,
    tuned_model: Any = None,
    tuned_tokenizer: Any = None,
    retrievers: Sequence[str] = ("bm25", "dense"),
    dense_encoder: Any = "minilm-l6",
    few_shot: int = 3,
    top_k: int = 3,
    max_new_tokens: int = 64,
    metric: str = "token_f1",
    confidence: float = 0.95,
    n_resamples: int = 1000,
    seed: int = 0,
    say: Callable[[str], None] = lambda _line: None,
) -> dict:
    """Run every system on ``eval_records`` (chat or instruction records) and return a report dict.

    RAG retrieves from ``documents`` when given, else from ``train_records`` rendered by
    ``document_from_record``; without either, RAG systems are left out (with a note). Few-shot
    examples are ``few_shot`` seeded picks from ``train_records``. ``tuned_model`` is a model
    object or a saved folder; without it only the base systems run. ``dense_encoder`` is an
    encoder folder, "minilm-l6", or a ready DenseRetriever over the same documents.

    Returns the ``lmforge.evaluate.html`` report dict plus "per_example": {system: {"outputs",
    "scores", "latency_s", "prompt_tokens"}} and "reference_system".
    """
    if metric not in QUALITY_METRICS:
        raise ValueError(f"metric must be one of {QUALITY_METRICS}, got {metric!r}")
    examples = without_copies([{"messages": prompt_messages(r), "reference": reference_text(r)} for r in eval_records])
    docs = list(documents) if documents is not None else [document_from_record(r) for r in train_records]
    notes = []
    if len(examples) < len(eval_records):
        notes.append(f"{len(eval_records) - len(examples)} exact copies among the {len(eval_records)} held-out "
                     f"examples left out: each question is answered and counted once.")
        say(f"compare: {notes[-1]}")
    if not docs and retrievers:
        notes.append("RAG skipped: no documents and no training examples to retrieve from.")
        retrievers = ()
    index = _build_retrievers(retrievers, docs, dense_encoder)
    rng = random.Random(seed)
    shots = rng.sample(list(train_records), min(few_shot, len(train_records)))
    tuned = load_tuned(tuned_model, tuned_tokenizer or tokenizer) if tuned_model is not None else None
    plan = _systems((base_model, tokenizer), tuned, index, shots)
    runs = {}
    for s in plan:
        say(f"compare: {s['name']}: answering {len(examples)} questions ...")
        with progress.within(s["name"]):
            runs[s["name"]] = _run_system(
                s, examples, index, generate_fn=generate_fn, top_k=top_k, max_new_tokens=max_new_tokens, documents=docs
            )
        say(f"compare: {s['name']}: done, {sum(runs[s['name']]['latency_s']):.0f} s")
    references = [ex["reference"] for ex in examples]
    for run in runs.values():
        run["scores"] = per_example_scores(run["outputs"], references)
    return _report(runs, examples, metric, confidence=confidence, n_resamples=n_resamples, seed=seed, notes=notes)


def without_copies(examples: list[dict]) -> list[dict]:
    """``examples`` without exact copies (same prompt messages and reference), first ones kept, in order.

    A copy's answers are the copy's answers again (greedy decoding), so it would add rows to the bootstrap
    without adding evidence (see lmforge.evaluate.intervals) and cost a generation per system."""
    seen, out = set(), []
    for ex in examples:
        key = json.dumps([ex["messages"], ex["reference"]], sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(ex)
    return out


def _report(runs: dict, examples: list[dict], metric: str, *, confidence, n_resamples, seed, notes) -> dict:
    """Assemble intervals, the cost table, paired tests and the recommendation into a report dict."""
    systems = {
        name: {
            m: bootstrap_interval(run["scores"][m], confidence=confidence, n_resamples=n_resamples, seed=seed).to_dict()
            for m in QUALITY_METRICS
        }
        for name, run in runs.items()
    }
    table = [
        {
            "system": name,
            "latency_s": statistics.median(run["latency_s"]) if run["latency_s"] else 0.0,
            "prompt_tokens": statistics.mean(run["prompt_tokens"]) if run["prompt_tokens"] else 0.0,
            "weights_mb": round(run["weights_mb"], 1),
            "peak_mb": round(run["peak_mb"], 1),
        }
        for name, run in runs.items()
    ]
    reference = "fine-tuned" if "fine-tuned" in runs else "base zero-shot"
    paired = []
    for name, run in runs.items():
        if name == reference:
            continue
        result = paired_bootstrap(
            runs[reference]["scores"][metric], run["scores"][metric],
            confidence=confidence, n_resamples=n_resamples, seed=seed,
        )
        paired.append({"a": reference, "b": name, "metric": metric, **result.to_dict()})
    samples = [
        {"prompt": _question(ex["messages"]), "reference": ex["reference"]}
        | {n: r["outputs"][i] for n, r in runs.items()}
        for i, ex in enumerate(examples[:5])
    ]
    notes = notes + [
        f"{len(examples)} held-out examples; intervals: {confidence:.0%} percentile bootstrap "
        f"({n_resamples} resamples).",
        "latency_s: median seconds per query: its retrieval plus an equal share of its system's batched "
        "generation time; prompt_tokens: mean per query.",
        "peak_mb: CUDA peak allocated per system on GPU, else the process's peak RSS so far (monotonic on CPU).",
    ]
    return {
        "title": "lmforge compare: prompting vs RAG vs fine-tuning",
        "systems": systems,
        "table": table,
        "paired": paired,
        "samples": samples,
        "recommendation": recommend(systems, table, paired, metric),
        "notes": notes,
        "reference_system": reference,
        "per_example": {
            n: {k: r[k] for k in ("outputs", "scores", "latency_s", "prompt_tokens")} for n, r in runs.items()
        },
    }


def write_compare_report(run_dir: str | Path, report: dict) -> dict[str, Path]:
    """Write compare.html, compare.md and compare.json into ``run_dir`` (atomically); returns the paths."""
    import json

    from lmforge.evaluate.html import markdown_summary, write_html_report

    run_dir = Path(run_dir)
    return {
        "html": write_html_report(run_dir / "compare.html", report),
        "markdown": atomic_write_text(run_dir / "compare.md", markdown_summary(report)),
        "json": atomic_write_text(run_dir / "compare.json", json.dumps(report, indent=2, default=str)),
    }
