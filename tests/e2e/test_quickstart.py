"""The demo path on the real assets (SmolLM2 cut to 2 layers to stay fast), and its report as a user
sees it: Markdown and HTML with the same headline numbers and intervals, flagged samples, and the page
rendered by headless Chromium (a screenshot is kept in the test's tmp dir)."""

from __future__ import annotations

import io
import json
import re
import subprocess

import pytest

from tests.e2e.conftest import run_cli


def _md_row(md: str, metric: str) -> list[str]:
    line = next(line for line in md.splitlines() if line.startswith(f"| {metric} |"))
    return [c.strip() for c in line.strip("|").split(" | ")]


@pytest.mark.slow
def test_quickstart_runs_on_real_assets_and_its_report_renders(tmp_path):
    from PIL import Image

    from tests.unit.evaluate.test_html import _chromium, _chromium_args

    run = tmp_path / "qs"
    proc = run_cli(
        "quickstart", f"run.output_dir={run}", "model.overrides={num_hidden_layers: 2}",
        "train.max_steps=2", "train.eval_every=2", "eval.max_examples=8", "eval.generations=2",
        "eval.max_new_tokens=8", "eval.generate_metrics=3", "data.max_length=64", "train.batch_size=2",
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "kernels-community" not in proc.stderr
    results = json.loads((run / "results.json").read_text())
    assert results["before"]["eval_loss"] > 0 and results["after"]["eval_loss"] > 0
    assert results["data"]["train_examples"] > 500  # FiQA has 648 pairs
    assert (run / "export" / "adapter" / "adapter_config.json").exists()

    # intervals for every headline metric, per-example rows with ids, flags on every sample
    after = results["after"]
    for name in ("eval_loss", "perplexity", "token_f1", "rougeL", "bleu"):
        assert after["intervals"][name]["low"] <= after[name] <= after["intervals"][name]["high"], name
    assert len(after["per_example"]["id"]) == 8 and len(after["per_example"]["generation"]["output"]) == 3
    assert results["changes"]["perplexity"]["p_value"] >= 0
    assert all(set(s["flags"]) == {"before", "after"} for s in results["samples"]) and len(results["samples"]) == 2
    truncated = sum("truncated" in flags for s in results["samples"] for flags in s["flags"].values())
    assert results["sample_flags"]["truncated"]["after"] + results["sample_flags"]["truncated"]["before"] == truncated

    # the same headline numbers, with intervals, in report.md and report.html
    md = (run / "report.md").read_text()
    page = (run / "report.html").read_text()
    for metric in ("eval_loss", "perplexity", "token_f1"):
        _name, before_cell, after_cell, change = _md_row(md, metric)
        assert "[" in before_cell and "[" in after_cell and ("noise" in change)
        assert f">{after_cell}<" in page and f">{before_cell}<" in page, metric
    assert "- **Serve it**: lmforge serve " in md and "truncated:" in md and "repetitive:" in md

    # the page as Chromium renders it
    args = _chromium_args(_chromium(), tmp_path / "profile")
    dom = subprocess.run(args + ["--dump-dom", (run / "report.html").as_uri()], capture_output=True, text=True,
                         timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    assert '<dl class="facts">' in html and "<dt>Serve it</dt><dd>lmforge serve " in html
    assert re.search(r"<td>perplexity</td><td class=\"num\">[^<]+\[[^<]+\]</td>", html)
    assert "Change before -&gt; after" in html and 'alt="changes with intervals"' in html
    assert html.count('<span class="flag">truncated</span>') == truncated
    assert len(re.findall(r"<img[^>]+src=\"data:image/png;base64,", html)) == 4  # changes, curves, 2 lengths
    shot = tmp_path / "report.png"
    taken = subprocess.run(args + [f"--screenshot={shot}", "--window-size=1200,3200", (run / "report.html").as_uri()],
                           capture_output=True, text=True, timeout=120)
    assert taken.returncode == 0 and shot.exists(), taken.stderr[-2000:]
    image = Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")
    top = image.crop((0, 0, image.width, 300))
    # the run-facts box (background #f6f8fb) sits at the top, under the title
    assert (246, 248, 251) in {rgb for _count, rgb in top.getcolors(maxcolors=1_000_000)}
    colors = image.getcolors(maxcolors=1_000_000)
    assert len(colors) > 800 and sum(c for c, rgb in colors if rgb != (255, 255, 255)) > 0.05 * image.width * image.height
