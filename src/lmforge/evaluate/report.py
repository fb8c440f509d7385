"""The before -> after report of a run: ``report.md`` and ``report.html`` for people, ``results.json`` for programs.

When the before / after metrics carry ``per_example`` values (``evaluate(..., per_example=True)``)
every headline metric gets a bootstrap interval and a paired before -> after test, and the report
says whether the change is beyond noise or within it.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Mapping

from lmforge.atomic import atomic_write_text
from lmforge.evaluate.uncertainty import (
    bootstrap_corpus_interval,
    bootstrap_interval,
    paired_bootstrap,
    paired_corpus_test,
)

# Metric-name parts for which lower is better; higher is better for every other score.
_LOWER_IS_BETTER = {"loss", "perplexity", "error", "ece"}


def write_report(run_dir: str | Path, report: Mapping[str, Any]) -> Path:
    """Write ``run_dir/results.json`` and ``run_dir/report.md`` atomically; return the report.md path.

    report: ``{"model", "method", "objective", "data": {...}, "before": metrics | None,
    "after": metrics, "samples": [{"prompt", "reference", "before"?, "after"}],
    "train": {"steps", "best_step", ...}}`` plus any other JSON-serialisable keys (kept in
    results.json). Non-finite floats (an overflowed perplexity) become ``null`` in results.json
    so it stays strict JSON. Optional keys used by the reports: ``before`` / ``after`` metrics with
    ``per_example`` (intervals and paired tests), ``forgetting``: ``{"source", "before", "after"}``
    (``lmforge.evaluate.forgetting.measure_forgetting`` outputs), ``judge`` (``judge.judge_outputs``).
    results.json also holds ``noise_tests`` (:func:`noise_tests` of before / after) when both carry
    per-example values.

    Also writes ``run_dir/report.html`` (self-contained, plots embedded): metric bars with
    intervals, paired tests, loss / metric curves from ``run_dir/metrics.jsonl`` when present,
    the confusion matrix of a classifier, a length histogram and the samples before -> after.
    """
    from lmforge.evaluate.html import write_html_report

    run_dir = Path(run_dir)
    report = dict(report)
    if report.get("forgetting") and "before" in report["forgetting"]:
        report["forgetting"] = {**report["forgetting"], "change": forgetting_change(report["forgetting"])}
    # The paired tests are stored so readers (lmforge ui) show intervals without re-running the bootstrap.
    tests = noise_tests(report.get("before") or {}, report.get("after") or {})
    results = {**report, "noise_tests": tests} if tests else report
    atomic_write_text(run_dir / "results.json", json.dumps(_finite(results), indent=2, allow_nan=False, default=str) + "\n")
    write_html_report(run_dir / "report.html", html_report(report, run_dir / "metrics.jsonl"))
    return atomic_write_text(run_dir / "report.md", render_report(report))


def html_report(report: Mapping[str, Any], metrics_log: str | Path | None = None) -> dict:
    """The ``lmforge.evaluate.html`` report dict of a train / eval run report (see :func:`write_report`).

    systems before / after (intervals where :func:`noise_tests` has them), paired tests, curves
    from ``metrics_log`` (a metrics.jsonl; train ``loss`` and every eval metric), the confusion
    matrix of ``after``, held-out scored-token lengths and the samples before -> after.
    """
    before, after = report.get("before") or {}, report.get("after") or {}
    tests = noise_tests(before, after)
    systems = {name: _system_cells(metrics, tests, name) for name, metrics in (("before", before), ("after", after))
               if metrics}
    paired = [{"a": "before", "b": "after", **{k: t[k] for k in ("metric", "difference", "low", "high", "p_value",
                                                                  "within_noise")}}
              for name, t in tests.items() if name != "perplexity"]
    notes = [f"{k}: {_cell(v)}" for section in ("data", "parameters", "train")
             for k, v in (report.get(section) or {}).items()]
    change = (report.get("forgetting") or {}).get("change")
    if change:
        paired.append(change["sentence"])
        for side in ("before", "after"):
            systems.setdefault(side, {})[f"general_{change['metric']}"] = change[side]
    out: dict[str, Any] = {
        "title": f"lmforge run: {report.get('model', '?')} ({report.get('method', '?')}, {report.get('objective', '?')})",
        "systems": systems, "paired": paired, "notes": notes,
    }
    history = read_history(metrics_log) if metrics_log else []
    if history:
        out["history"] = history
    final = after or before
    if final.get("confusion_matrix") and final.get("labels"):
        out["confusion"] = {"labels": final["labels"], "matrix": final["confusion_matrix"]}
    lengths = _lengths(report, after or before)
    if lengths:
        out["lengths"] = lengths
    if report.get("samples"):
        out["samples"] = [{k: s[k] for k in ("prompt", "reference", "before", "after") if k in s} for s in report["samples"]]
    judge = report.get("judge")
    if judge:
        out["table"] = [{"judge": judge.get("model"), "system": name, "mean score": score}
                        for name, score in (judge.get("systems") or {"after": judge.get("mean")}).items()]
        out["notes"] = notes + [f"judge prompt: {judge.get('prompt', '')}"]
    return out


def _system_cells(metrics: Mapping[str, Any], tests: Mapping[str, dict], side: str) -> dict:
    cells: dict[str, Any] = {}
    for name, value in metrics.items():
        if not _number(value) or name in ("eval_examples", "perplexity") or not math.isfinite(value):
            continue
        cells[name] = {k: tests[name][side][k] for k in ("value", "low", "high")} if name in tests else value
    return cells


def read_history(path: str | Path) -> list[dict]:
    """Curve points from a metrics.jsonl: ``{"step", "loss"}`` of train events and eval metrics as
    ``eval_<name>`` (perplexity, counters and torn lines left out)."""
    path = Path(path)
    if not path.is_file():
        return []
    points = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or not _number(record.get("step")):
            continue
        if record.get("event") == "eval":
            values = {(k if k.startswith("eval_") else f"eval_{k}"): v for k, v in record.items()
                      if _number(v) and k not in ("step", "eval_examples", "perplexity")}
        else:
            values = {"loss": record["loss"]} if _number(record.get("loss")) else {}
        if values:
            points.append({"step": record["step"], **values})
    return points


def _lengths(report: Mapping[str, Any], metrics: Mapping[str, Any]) -> dict[str, list]:
    lengths: dict[str, list] = {}
    counts = (metrics.get("per_example") or {}).get("count")
    if counts:
        lengths["held-out scored tokens"] = list(counts)
    for side in ("before", "after"):
        words = [len(str(s[side]).split()) for s in report.get("samples") or [] if side in s]
        if words:
            lengths[f"sample answer words ({side})"] = words
    return lengths


def forgetting_change(forgetting: Mapping[str, Any]) -> dict | None:
    """``compare_forgetting`` of ``{"source", "before", "after"}`` (None when a side is missing)."""
    from lmforge.evaluate.forgetting import compare_forgetting

    if not (forgetting.get("before") and forgetting.get("after")):
        return None
    return compare_forgetting(forgetting["before"], forgetting["after"], source=forgetting.get("source"))


def noise_tests(before: Mapping[str, Any], after: Mapping[str, Any], *, seed: int = 0) -> dict[str, dict]:
    """Paired before -> after tests on the same held-out examples, by metric name.

    Needs ``per_example`` in both (see ``lmforge.evaluate.run.evaluate``) over the same number of
    examples; otherwise ``{}``. ``eval_loss`` (and ``perplexity``, its monotone image) is tested
    token-weighted, as eval_loss is computed; ``accuracy`` on per-example correctness. Each value:
    ``{"metric", "difference" (after - before), "low", "high", "p_value", "within_noise",
    "before": interval, "after": interval}``.
    """
    pa, pb = (before or {}).get("per_example"), (after or {}).get("per_example")
    if not (pa and pb) or len(pa.get("count", [])) != len(pb.get("count", [])) or not pa.get("count"):
        return {}
    tests = {}
    sa, sb = _loss_sums(pa), _loss_sums(pb)
    if sa is not None and sb is not None:
        import numpy as np

        counts = np.asarray(pa["count"], dtype=float)
        if counts.sum() > 0 and np.array_equal(counts, np.asarray(pb["count"], dtype=float)):
            def mean_loss(sums):
                return lambda idx: float(sums[idx].sum() / max(counts[idx].sum(), 1.0))

            n = len(counts)
            test = paired_corpus_test(mean_loss(sa), mean_loss(sb), n, seed=seed)
            tests["eval_loss"] = {"metric": "eval_loss", **test.to_dict(),
                                  "before": bootstrap_corpus_interval(mean_loss(sa), n, seed=seed).to_dict(),
                                  "after": bootstrap_corpus_interval(mean_loss(sb), n, seed=seed).to_dict()}
            tests["perplexity"] = {**tests["eval_loss"], "metric": "perplexity"}
    if pa.get("correct") and pb.get("correct"):
        test = paired_bootstrap(pa["correct"], pb["correct"], seed=seed)
        tests["accuracy"] = {"metric": "accuracy", **test.to_dict(),
                             "before": bootstrap_interval(pa["correct"], seed=seed).to_dict(),
                             "after": bootstrap_interval(pb["correct"], seed=seed).to_dict()}
    return tests


def _loss_sums(per_example: Mapping[str, Any]):
    """Per-example loss sums (mean x count) as a numpy array; None if any example has no score."""
    import numpy as np

    losses, counts = per_example.get("loss") or [], per_example.get("count") or []
    if not losses or any(v is None for v in losses):
        return None
    return np.asarray(losses, dtype=float) * np.asarray(counts, dtype=float)


def render_report(report: Mapping[str, Any]) -> str:
    """The markdown text of ``report.md`` (see :func:`write_report` for the report's keys)."""
    lines = [f"# lmforge run: {report.get('model', '?')}", ""]
    for key in ("model", "method", "objective"):
        if report.get(key) is not None:
            lines.append(f"- **{key}**: {report[key]}")
    for section in ("data", "parameters", "train"):
        values = report.get(section) or {}
        if values:
            lines.append(f"- **{section}**: " + ", ".join(f"{k} {_cell(v)}" for k, v in values.items()))
    before, after = report.get("before") or {}, report.get("after") or {}
    lines += ["", "## Metrics (held-out data)", "", _markdown_table(comparison_rows(before, after)), ""]
    lines += noise_sentences(before, after)
    change = (report.get("forgetting") or {}).get("change")
    if change:
        lines += ["## Forgetting (general-domain set)", "", change["sentence"], ""]
    judge = report.get("judge")
    if judge:
        lines += ["## LLM judge", "", f"judge model: {judge.get('model')}; mean score {_cell(judge.get('mean'))} "
                  f"(scale {judge.get('scale')})", "", "judge prompt:", "", _fenced(str(judge.get('prompt', ''))), ""]
    for title, metrics in (("before", before), ("after", after)):
        lines += _class_sections(title, metrics)
        for task, task_metrics in (metrics.get("tasks") or {}).items():  # multi-task runs
            lines += _class_sections(f"{title}, task {task}", task_metrics)
    samples = report.get("samples") or []
    if samples:
        lines += ["## Sample generations", ""]
        for i, sample in enumerate(samples, 1):
            lines.append(f"### Sample {i}")
            for key in ("prompt", "reference", "before", "after"):
                if key in sample:
                    lines += ["", f"**{key}**", "", _fenced(str(sample[key]))]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def noise_sentences(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """Markdown lines saying, per tested metric, whether before -> after is beyond noise."""
    tests = noise_tests(before, after)
    if not tests:
        return []
    lines = ["## Is the change real? (paired bootstrap, 95%)", ""]
    for name, t in tests.items():
        if name == "perplexity":
            continue
        verdict = "within noise" if t["within_noise"] else "beyond noise"
        lines.append(f"- {name}: {t['before']['value']:.4g} [{t['before']['low']:.4g}, {t['before']['high']:.4g}] -> "
                     f"{t['after']['value']:.4g} [{t['after']['low']:.4g}, {t['after']['high']:.4g}], change "
                     f"{t['difference']:+.4g} [{t['low']:+.4g}, {t['high']:+.4g}], {p_text(t['p_value'])}: "
                     f"change {verdict}")
    return lines + [""]


def p_text(p_value: float, resamples: int = 1000) -> str:
    """``p=0.031``, or ``p<0.001`` when no resample reached the observed difference (p is then 0 only
    because the resampling is finite)."""
    return f"p<{1 / resamples:.3g}" if p_value < 1 / resamples else f"p={p_value:.3g}"


def format_comparison(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> str:
    """A plain-text table ``metric | before | after | change`` of the numeric metrics.

    ``change`` is after - before, with ``(better)`` / ``(worse)`` when the direction is known
    (loss / perplexity go down, scores go up), and ``, within noise`` / ``, beyond noise`` when
    both sides carry ``per_example`` values (see :func:`noise_tests`). Metrics missing on one side
    show ``-``.
    """
    rows = comparison_rows(before or {}, after)
    header = ("metric", "before", "after", "change")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    out = [" | ".join(str(c).ljust(w) for c, w in zip(header, widths)).rstrip()]
    out.append("-+-".join("-" * w for w in widths))
    out += [" | ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip(" |") for row in rows]
    return "\n".join(out)


def comparison_rows(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[tuple[str, str, str, str]]:
    """(metric, before, after, change) strings for each numeric metric of ``after`` then ``before``."""
    names = [k for k in after if _number(after[k])] + [k for k in before if _number(before[k]) and k not in after]
    tests = noise_tests(before, after)
    rows = []
    for name in names:
        b, a = before.get(name), after.get(name)
        change = _change(name, b, a)
        if change and name in tests:
            verdict = "within noise" if tests[name]["within_noise"] else "beyond noise"
            change = change[:-1] + f", {verdict})" if change.endswith(")") else f"{change} ({verdict})"
        rows.append((name, _cell(b) if _number(b) else "-", _cell(a) if _number(a) else "-", change))
    return rows


def _change(name: str, before: Any, after: Any) -> str:
    if not (_number(before) and _number(after)) or name == "eval_examples":
        return ""
    if not (math.isfinite(before) and math.isfinite(after)):
        return ""
    delta = after - before
    if delta == 0:
        return "0"
    lower = any(part in _LOWER_IS_BETTER for part in re.split(r"[_/]", name.lower()))  # task/<name>/eval_loss too
    verdict = "better" if (delta < 0) == lower else "worse"
    return f"{delta:+.4g} ({verdict})"


def _class_sections(title: str, metrics: Mapping[str, Any]) -> list[str]:
    per_class, matrix, labels = metrics.get("per_class"), metrics.get("confusion_matrix"), metrics.get("labels")
    if not per_class:
        return []
    rows = [(name, _cell(v["precision"]), _cell(v["recall"]), _cell(v["f1"]), str(v["support"]))
            for name, v in per_class.items()]
    lines = [f"## Per class ({title})", "", _markdown_table(rows, ("label", "precision", "recall", "f1", "support")), ""]
    if matrix and labels:
        head = ("gold \\ predicted", *labels)
        lines += [_markdown_table([(labels[i], *map(str, row)) for i, row in enumerate(matrix)], head), ""]
    return lines


def _markdown_table(rows: list[tuple], header: tuple = ("metric", "before", "after", "change")) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _fenced(text: str) -> str:
    if not text.strip():
        return "*(empty)*"
    fence = "```"
    while fence in text:
        fence += "`"
    return f"{fence}\n{text}\n{fence}"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if math.isfinite(value) and abs(value) < 1e6 else f"{value:.4g}"
    return str(value)


def _finite(value: Any) -> Any:
    """``value`` with non-finite floats replaced by None, recursively (strict JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
