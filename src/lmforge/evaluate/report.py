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
from lmforge.evaluate.intervals import paired_tests, system_intervals
from lmforge.evaluate.uncertainty import p_text

# Metric-name parts for which lower is better; higher is better for every other score.
# Name parts of metrics where lower is better: losses, errors, and what a preference objective should push down
# (the rejected / undesirable answers' log-probs and rewards: "reward_undesirable -0.18" is the model learning).
_LOWER_IS_BETTER = {"loss", "perplexity", "error", "ece", "rejected", "undesirable"}


def write_report(run_dir: str | Path, report: Mapping[str, Any]) -> Path:
    """Write ``run_dir/results.json``, ``report.md`` and ``report.html`` atomically; return the report.md path.

    report: ``{"model", "method", "objective", "data": {...}, "before": metrics | None,
    "after": metrics, "samples": [{"prompt", "reference", "before"?, "after", "truncated"?}],
    "train": {"steps", "best_step", ...}, "run"?: {"folder", "exports", "serve"}}`` plus any other
    JSON-serialisable keys (kept in results.json). Non-finite floats (an overflowed perplexity)
    become ``null`` in results.json so it stays strict JSON. Optional keys used by the reports:
    ``before`` / ``after`` metrics with ``per_example`` rows (intervals for every metric and paired
    before -> after tests: :mod:`lmforge.evaluate.intervals`), ``forgetting``: ``{"source",
    "before", "after"}`` (``measure_forgetting`` outputs), ``judge`` (``judge.judge_outputs``).

    What the writer adds (also to results.json): ``intervals`` in before / after where per-example
    rows exist without them, ``changes`` (the paired tests by metric), each sample's ``flags``
    (repetitive / truncated, :mod:`lmforge.evaluate.samples`) and ``sample_flags`` (their counts).
    """
    from lmforge.evaluate.html import write_html_report

    run_dir = Path(run_dir)
    report = complete_report(report)
    atomic_write_text(run_dir / "results.json", json.dumps(_finite(report), indent=2, allow_nan=False, default=str) + "\n")
    write_html_report(run_dir / "report.html", html_report(report, run_dir / "metrics.jsonl"))
    return atomic_write_text(run_dir / "report.md", render_report(report))


def complete_report(report: Mapping[str, Any]) -> dict:
    """``report`` plus forgetting change, intervals, paired tests and sample flags (see :func:`write_report`)."""
    from lmforge.evaluate.samples import flag_samples

    report = dict(report)
    if report.get("forgetting") and "before" in report["forgetting"]:
        report["forgetting"] = {**report["forgetting"], "change": forgetting_change(report["forgetting"])}
    for side in ("before", "after"):
        metrics = report.get(side)
        if isinstance(metrics, Mapping) and metrics.get("per_example") and "intervals" not in metrics:
            report[side] = {**metrics, "intervals": system_intervals(metrics["per_example"], metrics.get("labels"))}
    tests = noise_tests(report.get("before") or {}, report.get("after") or {})
    if tests:
        report["changes"] = {k: {n: v for n, v in t.items() if n not in ("before", "after")} for k, t in tests.items()}
    if report.get("samples"):
        report["samples"], report["sample_flags"] = flag_samples(list(report["samples"]))
    return report


def held_out_sentence(data: Mapping[str, Any]) -> str:
    """Which held-out set did what: the reported numbers' set, and the one that picked the checkpoint."""
    reported, selected = data.get("reported_on"), data.get("selected_on")
    if reported == "test" and selected:
        return ("the numbers below come from the test set, which chose nothing; the validation set picked "
                "the checkpoint (and early stopping)")
    if reported == "test":
        return "the numbers below come from the test set, which chose nothing; no validation set: the last step was kept"
    return ("the numbers below come from the validation set, which also picked the checkpoint: they are "
            "optimistic (give data.test or data.split.test for unbiased numbers)")


def distinct_examples(metrics: Mapping[str, Any]) -> int | None:
    """How many distinct examples the intervals of ``metrics`` resampled when the examples held exact copies
    (lmforge.evaluate.intervals counts each once); None when they held none."""
    return next((ci["distinct"] for ci in (metrics.get("intervals") or {}).values()
                 if isinstance(ci, Mapping) and "distinct" in ci), None)


def format_metrics(metrics: Mapping[str, Any]) -> str:
    """One system's numeric metrics, a line each: the value with its 95% interval where it has one, and the
    example count with how many are distinct when there are exact copies (what ``lmforge eval`` prints)."""
    numbers = {k: v for k, v in metrics.items() if _number(v)}
    intervals, distinct = metrics.get("intervals") or {}, distinct_examples(metrics)
    width = max((len(k) for k in numbers), default=0)
    lines = []
    for key, value in numbers.items():
        ci = intervals.get(key) or {}
        if key == "eval_examples":
            shown = f"{int(value)}" + (f" ({distinct} distinct)" if distinct is not None else "")
        elif all(_number(ci.get(end)) and math.isfinite(ci[end]) for end in ("low", "high")):
            shown = f"{value:.4f}  [{ci['low']:.4f}, {ci['high']:.4f}]"
        else:
            shown = f"{value:.4f}"
        lines.append(f"{key:<{width}}  {shown}")
    return "\n".join(lines)


def _distinct_sentence(metrics: Mapping[str, Any]) -> str | None:
    """When the reported examples hold exact copies: how many are distinct and what that means for the numbers."""
    distinct = distinct_examples(metrics)
    n = metrics.get("eval_examples")
    if distinct is None or not _number(n):
        return None
    return (f"the {int(n)} reported examples are {distinct} distinct one{'s' * (distinct != 1)}; every interval and before -> after test "
            "counts each distinct example once (a copy is not new evidence)")


def run_facts(report: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The run in words, for the top of both reports: (label, sentence) pairs."""
    facts = []
    run = report.get("run") or {}
    if run.get("folder"):
        facts.append(("Run", f"folder {run['folder']}"))
    data = report.get("data") or {}
    if data:
        labels = (("train_examples", "training"), ("validation_examples", "validation"), ("test_examples", "test"),
                  ("eval_examples", "held-out"))
        parts = [f"{data[k]:,} {label}" for k, label in labels if isinstance(data.get(k), int)]
        facts.append(("Data", ", ".join(parts) + " examples" + (f" ({data['format']})" if data.get("format") else "")))
        if data.get("reported_on"):
            facts.append(("Held-out sets", held_out_sentence(data)))
    copies = _distinct_sentence(report.get("after") or report.get("before") or {})
    if copies:
        facts.append(("Exact copies", copies))
    method = f"{report.get('method', '?')} on {report.get('model', '?')}, objective {report.get('objective', '?')}"
    params = report.get("parameters") or {}
    if params.get("total"):
        method += (f"; trains {params['trainable']:,} of {params['total']:,} parameters "
                   f"({100 * params['trainable'] / params['total']:.2f}%)")
    facts.append(("Method", method))
    train = report.get("train") or {}
    fit = train.get("fit")
    if fit:
        how = f"chosen by {fit['folds']}-fold cross-validation on the training set" if fit.get("folds") else "method.c"
        facts.append(("Training", f"head solved by L-BFGS logistic regression in {fit.get('seconds', 0):.1f} s "
                                  f"(L2: C = {fit.get('c'):g}, {how})"))
    elif train.get("steps") is not None:
        best = f", best checkpoint at step {train['best_step']} by {train.get('best_metric', 'the eval metric')}" \
            if train.get("best_step") is not None else ""
        facts.append(("Training", f"{train['steps']} optimizer steps{best}"
                                  + (" (stopped early)" if train.get("stopped_early") else "")))
    if run.get("exports"):
        facts.append(("Exported", "; ".join(f"{kind}: {path}" for kind, path in run["exports"].items())))
    if run.get("serve"):
        facts.append(("Serve it", run["serve"]))
    return facts


def html_report(report: Mapping[str, Any], metrics_log: str | Path | None = None) -> dict:
    """The ``lmforge.evaluate.html`` report dict of a train / eval run report (see :func:`write_report`).

    Run facts in words; systems before / after with their intervals (perplexity included); the
    change of each headline metric with its paired interval (table and plot); curves from
    ``metrics_log`` with the base model's evaluation drawn at step 0; the confusion matrix of
    ``after``; held-out scored tokens and sample answer words as separate histograms; the samples
    before -> after with their flags.
    """
    before, after = report.get("before") or {}, report.get("after") or {}
    tests = noise_tests(before, after)
    systems = {name: _system_cells(metrics) for name, metrics in (("before", before), ("after", after)) if metrics}
    changes = [{"metric": name, **{k: t[k] for k in ("difference", "low", "high", "p_value", "within_noise")},
                "lower_is_better": lower_is_better(name)}
               for name, t in tests.items() if not name.startswith("per_class/")]
    notes = []
    change = (report.get("forgetting") or {}).get("change")
    if change:
        notes.append(change["sentence"])
        for side in ("before", "after"):
            systems.setdefault(side, {})[f"general_{change['metric']}"] = change[side]
    out: dict[str, Any] = {
        "title": f"lmforge run: {report.get('model', '?')} ({report.get('method', '?')}, {report.get('objective', '?')})",
        "facts": run_facts(report), "systems": systems, "changes": changes, "notes": notes,
    }
    history = read_history(metrics_log) if metrics_log else []
    curve_base = report.get("before_validation") or before  # the curves are validation metrics
    if history and curve_base:
        base = {f"eval_{k}" if not k.startswith("eval_") else k: v for k, v in curve_base.items()
                if _number(v) and k not in ("eval_examples", "perplexity")}
        keys = {k for row in history for k in row}
        history = [{"step": 0, **{k: v for k, v in base.items() if k in keys}}] + history
    if history:
        out["history"] = history
    final = after or before
    if final.get("confusion_matrix") and final.get("labels"):
        out["confusion"] = {"labels": final["labels"], "matrix": final["confusion_matrix"]}
    lengths = _lengths(report, after or before)
    if lengths:
        out["lengths"] = lengths
    if report.get("samples"):
        out["samples"] = [{k: s[k] for k in ("prompt", "reference", "before", "after", "flags") if k in s}
                          for s in report["samples"]]
        if report.get("sample_flags"):
            from lmforge.evaluate.samples import describe_counts

            out["sample_flags"] = describe_counts(report["sample_flags"])
    judge = report.get("judge")
    if judge:
        out["table"] = [{"judge": judge.get("model"), "system": name, "mean score": score}
                        for name, score in (judge.get("systems") or {"after": judge.get("mean")}).items()]
        out["notes"] = notes + [f"judge prompt: {judge.get('prompt', '')}"]
    return out


def _system_cells(metrics: Mapping[str, Any]) -> dict:
    """Headline metrics of one side, with their interval where there is one (perplexity included)."""
    intervals = metrics.get("intervals") or {}
    cells: dict[str, Any] = {}
    for name, value in metrics.items():
        if not _number(value) or name == "eval_examples" or not math.isfinite(value):
            continue
        ci = intervals.get(name)
        cells[name] = {"value": value, "low": ci["low"], "high": ci["high"]} if ci else value
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


def _lengths(report: Mapping[str, Any], metrics: Mapping[str, Any]) -> dict[str, dict[str, list]]:
    """Two separate histograms: held-out examples' scored tokens, and sample answers' words."""
    lengths: dict[str, dict[str, list]] = {}
    counts = (metrics.get("per_example") or {}).get("count")
    if counts:
        lengths["Held-out examples: scored tokens"] = {"held-out examples": list(counts)}
    words = {f"{side}": [len(str(s[side]).split()) for s in report.get("samples") or [] if side in s]
             for side in ("before", "after")}
    words = {k: v for k, v in words.items() if v}
    if words:
        lengths["Sample answers: words"] = words
    return lengths


def forgetting_change(forgetting: Mapping[str, Any]) -> dict | None:
    """``compare_forgetting`` of ``{"source", "before", "after"}`` (None when a side is missing)."""
    from lmforge.evaluate.forgetting import compare_forgetting

    if not (forgetting.get("before") and forgetting.get("after")):
        return None
    return compare_forgetting(forgetting["before"], forgetting["after"], source=forgetting.get("source"))


def noise_tests(before: Mapping[str, Any], after: Mapping[str, Any], *, seed: int = 0) -> dict[str, dict]:
    """Paired before -> after tests on the same held-out examples, by metric name.

    Needs ``per_example`` rows in both over the same examples (see ``lmforge.evaluate.run.evaluate``);
    otherwise ``{}``. Every metric both sides can recompute is tested (:func:`paired_tests`): eval_loss
    and perplexity token-weighted, accuracy, precision / recall / F1 (macro, micro, per class) from the
    labels and predictions, generation metrics from the scored generations. Each value:
    ``{"metric", "difference" (after - before), "low", "high", "p_value", "within_noise",
    "before": interval, "after": interval}``.
    """
    pa, pb = (before or {}).get("per_example"), (after or {}).get("per_example")
    if not (pa and pb):
        return {}
    labels = (after or {}).get("labels") or (before or {}).get("labels")
    if (before or {}).get("labels") and (after or {}).get("labels") and before["labels"] != after["labels"]:
        return {}
    tests = paired_tests(pa, pb, labels, seed=seed)
    if not tests:
        return {}
    sides = {}
    for name, metrics in (("before", before), ("after", after)):
        sides[name] = metrics.get("intervals") or system_intervals(metrics["per_example"], labels, seed=seed)
    return {name: {**t, "before": sides["before"][name], "after": sides["after"][name]}
            for name, t in tests.items() if name in sides["before"] and name in sides["after"]}


def render_report(report: Mapping[str, Any]) -> str:
    """The markdown text of ``report.md`` (see :func:`write_report` for the report's keys)."""
    lines = [f"# lmforge run: {report.get('model', '?')}", ""]
    lines += [f"- **{label}**: {text}" for label, text in run_facts(report)]
    before, after = report.get("before") or {}, report.get("after") or {}
    tests = noise_tests(before, after)
    reported = (report.get("data") or {}).get("reported_on") or "held-out"
    lines += ["", f"## Metrics ({reported} data, 95% bootstrap intervals)", "",
              _markdown_table(comparison_rows(before, after, tests)), ""]
    lines += noise_sentences(before, after, tests)
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
    lines += _sample_sections(report)
    return "\n".join(lines).rstrip() + "\n"


def _sample_sections(report: Mapping[str, Any]) -> list[str]:
    samples = report.get("samples") or []
    if not samples:
        return []
    from lmforge.evaluate.samples import describe_counts

    lines = ["## Sample generations", ""]
    counts = describe_counts(report.get("sample_flags") or {})
    if counts:
        lines += [f"- {line}" for line in counts] + [""]
    for i, sample in enumerate(samples, 1):
        lines.append(f"### Sample {i}")
        flags = sample.get("flags") or {}
        for key in ("prompt", "reference", "before", "after"):
            if key in sample:
                flagged = f" ({', '.join(flags[key])})" if flags.get(key) else ""
                lines += ["", f"**{key}**{flagged}", "", _fenced(str(sample[key]))]
        lines.append("")
    return lines


def noise_sentences(before: Mapping[str, Any], after: Mapping[str, Any], tests: Mapping[str, dict] | None = None
                    ) -> list[str]:
    """Markdown lines saying, per tested headline metric, whether before -> after is beyond noise."""
    tests = noise_tests(before, after) if tests is None else tests
    headline = {k: t for k, t in tests.items() if not k.startswith("per_class/")}
    if not headline:
        return []
    lines = ["## Is the change real? (paired bootstrap, 95%)", ""]
    for name, t in headline.items():
        verdict = "within noise" if t["within_noise"] else "beyond noise"
        lines.append(f"- {name}: {_ci(t['before'])} -> {_ci(t['after'])}, change "
                     f"{t['difference']:+.4g} [{t['low']:+.4g}, {t['high']:+.4g}], {p_text(t['p_value'])}: "
                     f"change {verdict}")
    return lines + [""]


def format_comparison(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> str:
    """A plain-text table ``metric | before | after | change`` of the numeric metrics.

    Values carry their 95% interval where the metrics have one; ``change`` is after - before with
    its paired interval, ``(better)`` / ``(worse)`` when the direction is known (loss / perplexity
    go down, scores go up), and ``within noise`` / ``beyond noise`` with the p-value when both sides
    carry ``per_example`` rows (see :func:`noise_tests`). Metrics missing on one side show ``-``.
    """
    rows = comparison_rows(before or {}, after)
    header = ("metric", "before", "after", "change")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(4)]
    out = [" | ".join(str(c).ljust(w) for c, w in zip(header, widths)).rstrip()]
    out.append("-+-".join("-" * w for w in widths))
    out += [" | ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip(" |") for row in rows]
    return "\n".join(out)


def comparison_rows(before: Mapping[str, Any], after: Mapping[str, Any], tests: Mapping[str, dict] | None = None
                    ) -> list[tuple[str, str, str, str]]:
    """(metric, before, after, change) strings for each numeric metric of ``after`` then ``before``."""
    names = [k for k in after if _number(after[k])] + [k for k in before if _number(before[k]) and k not in after]
    tests = noise_tests(before, after) if tests is None else tests
    rows = []
    for name in names:
        b, a = before.get(name), after.get(name)
        change = _change(name, b, a)
        if change and name in tests:
            t = tests[name]
            verdict = "within noise" if t["within_noise"] else "beyond noise"
            head, _, tail = change.partition(" (")
            direction = f"{tail[:-1]}, " if tail else ""
            change = f"{head} [{t['low']:+.4g}, {t['high']:+.4g}] ({direction}{verdict}, {p_text(t['p_value'])})"
        rows.append((name, _side_cell(before, name, tests.get(name, {}).get("before")),
                     _side_cell(after, name, tests.get(name, {}).get("after")), change))
    return rows


def _side_cell(metrics: Mapping[str, Any], name: str, tested: Mapping[str, Any] | None = None) -> str:
    value = metrics.get(name)
    if not _number(value):
        return "-"
    if name == "eval_examples":  # exact copies are one resampling unit (lmforge.evaluate.intervals)
        distinct = distinct_examples(metrics)
        return _cell(value) + (f" ({distinct} distinct)" if distinct is not None else "")
    interval = (metrics.get("intervals") or {}).get(name) or tested
    return _ci({**interval, "value": value}) if interval else _cell(value)


def _ci(cell: Mapping[str, Any]) -> str:
    if not (_number(cell.get("low")) and _number(cell.get("high"))) or not math.isfinite(cell["low"]):
        return _cell(cell["value"])
    return f"{cell['value']:.4g} [{cell['low']:.4g}, {cell['high']:.4g}]"  # as the HTML report writes it


def lower_is_better(name: str) -> bool:
    """Whether a lower value of metric ``name`` is better (loss, perplexity, error, ECE; the rejected or undesirable
    answers' log-probs and rewards)."""
    return any(part in _LOWER_IS_BETTER for part in re.split(r"[_/]", name.lower()))


def _change(name: str, before: Any, after: Any) -> str:
    if not (_number(before) and _number(after)) or name == "eval_examples":
        return ""
    if not (math.isfinite(before) and math.isfinite(after)):
        return ""
    delta = after - before
    if delta == 0:
        return "0"
    verdict = "better" if (delta < 0) == lower_is_better(name) else "worse"  # task/<name>/eval_loss too
    return f"{delta:+.4g} ({verdict})"


def _class_sections(title: str, metrics: Mapping[str, Any]) -> list[str]:
    per_class, matrix, labels = metrics.get("per_class"), metrics.get("confusion_matrix"), metrics.get("labels")
    if not per_class:
        return []
    intervals = metrics.get("intervals") or {}

    def cell(name: str, key: str, value: float) -> str:
        ci = intervals.get(f"per_class/{name}/{key}")
        return _ci({**ci, "value": value}) if ci else _cell(value)

    rows = [(name, cell(name, "precision", v["precision"]), cell(name, "recall", v["recall"]), cell(name, "f1", v["f1"]),
             str(v["support"])) for name, v in per_class.items()]
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
