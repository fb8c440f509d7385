"""The report dict a run writes (results.json / report.md / report.html), shared by train and eval."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from lmforge.pipeline.session import Session

Say = Callable[[str], None]


def build_report(session: Session, before: dict | None, after: dict, result, trainable: int, total: int) -> dict:
    """Before / after metrics and samples, data and parameter counts, and how training went."""
    cfg = session.config
    samples = []
    before_samples = (before or {}).get("samples") or []
    for i, sample in enumerate(after["samples"]):
        row = {"prompt": sample["prompt"], "reference": sample["reference"], "after": sample["output"],
               "truncated": {"after": sample.get("truncated")}}
        if i < len(before_samples):
            row["before"] = before_samples[i]["output"]
            row["truncated"]["before"] = before_samples[i].get("truncated")
        samples.append(row)
    return {
        "run": run_facts(session),
        "model": cfg.model.name,
        "method": session.plan.method.name,
        "objective": session.plan.objective.name,
        "data": {"format": cfg.data.format, "train_examples": len(session.splits.train), "validation_examples": len(session.splits.validation),
                 "test_examples": len(session.splits.test), "reported_on": session.reported, "selected_on": session.selection,
                 **session.tasks.summary(session.train_features)},
        "parameters": {"trainable": trainable, "total": total},
        "before": (before or {}).get("metrics"),
        "after": after["metrics"],
        "samples": samples,
        "train": {
            "steps": result.steps,
            "best_step": result.best_step,
            "best_metric": session.plan.best_metric,
            "stopped_early": result.stopped_early,
            **({"fit": result.fit} if getattr(result, "fit", None) else {}),
        },
    }


def run_facts(session: Session) -> dict:
    """Where the run's outputs go, for the top of its report: run folder, export folders, serve command."""
    cfg = session.config
    out = Path(cfg.export.dir or session.run_dir / "export")
    exports = {}
    if cfg.export.adapter and session.plan.method.saves_adapter:
        exports["adapter"] = str(out / "adapter")
    if session.plan.export_merged:
        exports["merged model"] = str(out / "merged")
    exports.update({fmt: str(out / fmt) for fmt in cfg.export.formats})
    usage = session.tasks.usage(session, out).split(":", 1)[-1].strip()  # e.g. "lmforge serve runs/x"
    return {"folder": str(session.run_dir), "exports": exports, "serve": usage}


def judge_samples(session: Session, report: dict, systems: list[str], say: Say) -> None:
    """Grade the report's sample answers with ``eval.judge`` (when set) into ``report["judge"]``;
    the report then shows only the first ``eval.generations`` samples."""
    cfg = session.config.eval.judge
    if cfg is None or not report.get("samples"):
        return
    from lmforge.evaluate.judge import DEFAULT_PROMPT, Judge, judge_outputs

    judge = Judge(base_url=cfg.url, model=cfg.model, api_key_env=cfg.api_key_env,
                  prompt=cfg.prompt or DEFAULT_PROMPT, scale=cfg.scale)
    say(f"judge: {cfg.model} at {cfg.url} grades {len(report['samples'])} answers per system ...")
    report["judge"] = judge_outputs(judge, report["samples"], systems)
    say("judge: " + ", ".join(f"{k} {v:.2f}" if v is not None else f"{k} -" for k, v in report["judge"]["systems"].items())
        + f" (1..{cfg.scale})")
    report["samples"] = report["samples"][: session.config.eval.generations]


def print_samples(samples: list[dict], say: Say) -> None:
    for sample in samples:
        say(f"\nprompt:    {elide(sample['prompt'])}\nbefore:    {elide(sample.get('before', ''), tail=0)}\n"
            f"after:     {elide(sample['after'], tail=0)}")


def elide(text: str, limit: int = 300, tail: int = 180) -> str:
    """``text`` within about ``limit`` characters for a terminal: its start and its last ``tail`` characters
    around " … " (a prompt's instruction and the end of its input), cut at spaces; whole when it fits."""
    if len(text) <= limit:
        return text
    head = text[: limit - tail]
    head = head.rsplit(" ", 1)[0] if " " in head.strip() else head
    if not tail:
        return f"{head} …"
    end = text[-tail:]
    end = end.split(" ", 1)[1] if " " in end.strip() else end
    return f"{head} … {end}"
