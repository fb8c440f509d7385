"""Page 3, runs side by side: metrics with intervals, a paired test where two runs share their
held-out set, overlaid curves, the same prompts answered by each, and ``lmforge compare`` output."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from fastapi import FastAPI, Request
from starlette.exceptions import HTTPException
from starlette.responses import HTMLResponse

from lmforge.ui.app import UIContext
from lmforge.ui.charts import line_chart
from lmforge.ui.paths import run_folder
from lmforge.ui.runs import curves

MAX_RUNS = 6


def held_out_key(cfg: dict) -> str:
    """What fixes a run's held-out examples: its data section and seed (equal keys = same examples)."""
    return json.dumps([cfg.get("data"), (cfg.get("run") or {}).get("seed")], sort_keys=True, default=str)


def metric_table(runs: list[dict]) -> tuple[list[str], list[dict]]:
    """(metric names, per run {metric: {"value", "low", "high"}}) of the after metrics."""
    names: list[str] = []
    cells = []
    for run in runs:
        after = run["results"].get("after") or {}
        intervals = after.get("intervals") or {}
        row = {}
        for metric, value in after.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or metric == "eval_examples":
                continue
            if metric not in names:
                names.append(metric)
            interval = intervals.get(metric) or {}
            row[metric] = {"value": value, "low": interval.get("low"), "high": interval.get("high")}
        cells.append(row)
    return names, cells


def paired_tests(runs: list[dict]) -> list[dict]:
    """Each run against the first, on the metrics ``noise_tests`` can pair (same held-out examples only)."""
    from lmforge.evaluate.report import noise_tests

    ref, out = runs[0], []
    for other in runs[1:]:
        if held_out_key(ref["config"]) != held_out_key(other["config"]):
            out.append({"a": ref["name"], "b": other["name"], "note": "different held-out sets: no paired test"})
            continue
        tests = noise_tests(ref["results"].get("after") or {}, other["results"].get("after") or {})
        if not tests:
            out.append({"a": ref["name"], "b": other["name"],
                        "note": "same held-out set, but no per-example scores to pair"})
        for name, t in tests.items():
            if name != "perplexity":
                out.append({"a": ref["name"], "b": other["name"], "metric": name, **{
                    k: t[k] for k in ("difference", "low", "high", "p_value", "within_noise")}})
    return out


def overlaid(ctx: UIContext, runs: list[dict]) -> list[str]:
    """SVG charts: training loss of every run, and each eval metric of every run."""
    loss, evals = {}, {}
    for run in runs:
        train, ev = curves(ctx.tail.records(run["path"]))
        loss[run["name"]] = train["loss"]
        for metric, points in ev.items():
            evals.setdefault(metric, {})[run["name"]] = points
    charts = [line_chart(loss, title="training loss")]
    charts += [line_chart(series, title=f"held-out {metric}") for metric, series in evals.items()]
    return [c for c in charts if c]


def same_prompts(runs: list[dict]) -> list[dict]:
    """Prompts whose samples appear in every run's report: reference and each run's answer."""
    by_run = [{s.get("prompt"): s for s in run["results"].get("samples") or [] if s.get("prompt")} for run in runs]
    common = [p for p in by_run[0] if all(p in b for b in by_run[1:])] if by_run else []
    return [{"prompt": p, "reference": by_run[0][p].get("reference", ""),
             "answers": [b[p].get("after", b[p].get("output", "")) for b in by_run]} for p in common]


def compare_sections(path: Path) -> str:
    """The saved ``lmforge compare`` report (compare.json) rendered with the report sections."""
    from lmforge.evaluate.html import render_sections

    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    return render_sections(report) if isinstance(report, dict) else ""


def register(app: FastAPI, ctx: UIContext) -> None:
    def values(names: list[str]) -> dict:
        runs = []
        for name in dict.fromkeys(names):
            folder = run_folder(ctx.runs_dir, name)
            runs.append({"name": name, "path": folder, "results": ctx.index.results(folder),
                         "config": ctx.index.config(folder)})
        metrics, cells = metric_table(runs)
        return {"title": "Compare", "runs": runs, "metrics": metrics, "cells": cells,
                "paired": paired_tests(runs) if len(runs) > 1 else [], "charts": overlaid(ctx, runs),
                "prompts": same_prompts(runs),
                "compare_reports": [(r["name"], compare_sections(r["path"] / "compare.json")) for r in runs
                                    if (r["path"] / "compare.json").is_file()]}

    @app.get("/compare", response_class=HTMLResponse)
    async def compare(request: Request):
        names = request.query_params.getlist("run")
        if not names:
            rows = await asyncio.to_thread(ctx.index.summaries)
            return ctx.page("compare_pick.html", title="Compare", rows=rows)
        if len(names) > MAX_RUNS:
            raise HTTPException(400, f"pick at most {MAX_RUNS} runs (got {len(names)})")
        return ctx.page("compare.html", **await asyncio.to_thread(values, names))
