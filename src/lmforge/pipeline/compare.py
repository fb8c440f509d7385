"""`lmforge compare`: prompting vs RAG vs fine-tuning on a run's own held-out set.

Short and readable top to bottom: find the trained run, rebuild it
(:func:`lmforge.pipeline.session.restore_session`: saved config, data splits, trained weights), load the
plain base model next to it, run :func:`lmforge.evaluate.compare.run_compare`, optionally grade
every answer with an LLM judge, and write compare.html / compare.md / compare.json into the run
folder. Heavy imports happen inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from lmforge import progress
from lmforge.errors import UserError

def run_comparison(config_path: str, overrides: Sequence[str] = (), *, run_dir: str | None = None,
                   retrievers: Sequence[str] = ("bm25", "dense"), few_shot: int = 3, top_k: int = 3,
                   max_examples: int | None = None, judge: Any = None, documents: str | None = None,
                   say: Callable[[str], None] = print) -> dict:
    """Compare base zero-/few-shot, base + RAG, fine-tuned and fine-tuned + RAG; return the report.

    config_path / overrides: the run config (its run folder is the default ``run_dir``).
    run_dir: a finished `lmforge train` folder (checkpoints inside). The held-out and training
    examples come from that run's saved config (plus ``overrides``), so every system answers the
    examples the fine-tuned model never saw. max_examples: first N held-out examples (default
    eval.max_examples, else all). judge: an optional ``lmforge.evaluate.judge.Judge``. documents: the user's
    own documents RAG retrieves from (a file, folder or pattern: :func:`read_documents`), else the training
    examples.
    Writes compare.html / .md / .json into the run folder. Raises UserError for data that is not
    chat / instruction, or a run folder without a trained checkpoint.
    """
    from lmforge.pipeline.configfile import load_run_config
    from lmforge.pipeline.plan import plan_run

    config = load_run_config(config_path, list(overrides), say=say)
    _check_generative(plan_run(config, config_path), "data.format")
    folder = Path(run_dir) if run_dir else Path(config.run.dir)
    if not (folder / "config.yaml").is_file() or not (folder / "checkpoints").is_dir():
        raise UserError("no trained run to compare", where=str(folder),
                        hint=f"train it first (lmforge train {config_path}) or pass --run RUN_FOLDER")
    from lmforge.config.inputs import input_paths
    from lmforge.outputs import claim_output_dir

    inputs = input_paths(config) + ([Path(documents).expanduser()] if documents else [])
    claim_output_dir(folder, "run", inputs=inputs, where="--run", create=False)  # compare.* go in here
    corpus = (documents, read_documents(documents)) if documents and retrievers else None  # before any model loads
    report = compare_run(folder, overrides, retrievers=retrievers, few_shot=few_shot, top_k=top_k,
                         max_examples=max_examples, judge=judge, documents=corpus, say=say)
    from lmforge.evaluate.compare import write_compare_report

    paths = write_compare_report(folder, report)
    say(format_compare_table(report))
    say(f"\n{report['recommendation']}\n\nreport: {paths['html']}")
    return report


def compare_run(run_dir: Path, overrides: Sequence[str] = (), *, retrievers: Sequence[str] = ("bm25", "dense"),
                few_shot: int = 3, top_k: int = 3, max_examples: int | None = None, judge: Any = None,
                documents: tuple[str, list[str]] | None = None, say: Callable[[str], None] = print) -> dict:
    """The compare report dict for a trained run folder (see :func:`run_comparison`); writes nothing.
    ``documents``: (where from, passages) RAG retrieves from instead of the training examples."""
    from lmforge.evaluate.compare import run_compare
    from lmforge.evaluate.generate import generate_replies
    from lmforge.pipeline.session import restore_session

    session = restore_session(run_dir, overrides, trained=True, say=say)
    _check_generative(session.plan, f"{run_dir}/config.yaml: data.format")
    limit = max_examples or session.config.eval.max_examples
    held = session.records(session.reported)
    eval_records = held[:limit] if limit else held
    if not eval_records:
        raise UserError("the run has no held-out example to compare on", where="data.test",
                        hint="give data.test a file or raise data.split.test")
    passages = documents[1] if documents else None
    corpus = (f"{len(passages)} passages of {documents[0]}" if documents
              else f"{len(session.splits.train)} training examples")
    say(f"compare: {len(eval_records)} held-out examples, retrieval over {corpus}")
    base = session.tasks.load_model(session.config.model, session.task, tokenizer=session.tokenizer).eval()
    session.model.eval()
    with progress.phase("compare"):
        report = run_compare(
            base, session.tokenizer, eval_records, generate_fn=generate_replies, train_records=session.splits.train,
            documents=passages, tuned_model=session.model, retrievers=tuple(retrievers), few_shot=few_shot,
            top_k=top_k, max_new_tokens=session.config.eval.max_new_tokens, seed=session.config.run.seed, say=say,
        )
    report["config"] = {"run": str(run_dir), "model": session.config.model.name, "method": session.plan.method.name,
                        "held_out_examples": len(eval_records), "few_shot": few_shot, "top_k": top_k,
                        "retrievers": list(retrievers), "retrieval_corpus": corpus}
    if judge is not None:
        add_judge(report, judge, eval_records, session.config.data)
    return report


def read_documents(path: str) -> list[str]:
    """The passages (:func:`lmforge.evaluate.retrieval.passages`) of the documents at ``path``: plain-text files
    (a folder's: one document each; a single file's paragraphs), or JSONL / JSON / CSV / Parquet rows with a
    ``text`` column, read like training data (shell patterns too). UserError naming the file and row."""
    from lmforge.config.inputs import is_pattern
    from lmforge.config.schema import SourceConfig
    from lmforge.data.sources import read_source
    from lmforge.evaluate.retrieval import passages

    if not is_pattern(path) and not Path(path).expanduser().exists():  # local only: never a hub dataset id
        raise UserError("no such file or folder", where=f"--documents {path}",
                        hint="give your documents' file, folder or pattern (relative paths start at the current folder)")
    texts = []
    for row, where in read_source(SourceConfig(path=path), text_format=True).rows:
        if not isinstance(row.get("text"), str):
            raise UserError(f"no text column to retrieve from (columns: {', '.join(map(str, row)) or 'none'})",
                            where=where, hint="give plain-text files (.txt / .md), or rows with a 'text' column")
        texts.append(row["text"])
    found = passages(texts)
    if not found:
        raise UserError("holds no text to retrieve from", where=f"--documents {path}")
    return found


def add_judge(report: dict, judge: Any, eval_records: Sequence[dict], data_cfg: Any = None) -> None:
    """Grade every system's answers with ``judge``; adds ``report["judge"]`` and a judge column to the table."""
    from lmforge.data.messages import prompt_messages, reference_text
    from lmforge.evaluate.judge import judge_outputs

    outputs = report["per_example"]
    samples = []
    for i, record in enumerate(eval_records):
        users = [m["content"] for m in prompt_messages(record, data_cfg) if m["role"] == "user"]
        samples.append({"prompt": users[-1] if users else "", "reference": reference_text(record, data_cfg),
                        **{name: run["outputs"][i] for name, run in outputs.items()}})
    graded = judge_outputs(judge, samples, list(outputs))
    report["judge"] = graded
    for row in report["table"]:
        row[f"judge score (1-{judge.scale})"] = graded["systems"].get(row["system"])
    report["notes"] = list(report.get("notes", [])) + [f"judge {judge.model} prompt: {judge.prompt}"]


def judge_endpoint(url: str, model: str, api_key_env: str = "OPENAI_API_KEY"):
    """An LLM judge at an OpenAI-compatible endpoint (``lmforge compare --judge-url``)."""
    from lmforge.evaluate.judge import Judge

    return Judge(base_url=url, model=model, api_key_env=api_key_env)


def format_compare_table(report: dict) -> str:
    """A plain-text table: system | token_f1 [interval] | exact_match | latency | prompt tokens."""
    metric = "token_f1"
    costs = {row["system"]: row for row in report.get("table", [])}
    rows = [("system", f"{metric} [95% interval]", "exact_match", "latency_s", "prompt_tokens")]
    for name, scores in report["systems"].items():
        cell, em, cost = scores.get(metric, {}), scores.get("exact_match", {}), costs.get(name, {})
        rows.append((name, f"{cell.get('value', 0):.3f} [{cell.get('low', 0):.3f}, {cell.get('high', 0):.3f}]",
                     f"{em.get('value', 0):.3f}", f"{cost.get('latency_s', 0):.3f}", f"{cost.get('prompt_tokens', 0):.1f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _check_generative(plan, where: str) -> None:
    if not plan.generative:
        raise UserError(f"compare needs question/answer data (chat or instruction), not '{plan.data_format.name}'",
                        where=where,
                        hint="prompting vs RAG vs fine-tuning is measured on generated answers; "
                             "use `lmforge eval` for classification / text / preference runs")
