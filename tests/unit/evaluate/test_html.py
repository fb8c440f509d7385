"""The HTML report is self-contained and renders with its plots in headless Chromium.

Needs the Debian package `chromium` (apt-get install -y chromium). A missing browser FAILS this
test on purpose: a report that does not render is a broken report.
"""

from __future__ import annotations

import base64
import io
import re
import shutil
import subprocess

import pytest

from lmforge.evaluate.calibration import calibration_bins
from lmforge.evaluate.html import markdown_summary, render_html, systems_of, write_html_report


def _report() -> dict:
    return {
        "title": "Demo <run>",
        "systems": {
            "before": {"token_f1": {"value": 0.3, "low": 0.2, "high": 0.4}, "exact_match": 0.1},
            "after": {"token_f1": {"value": 0.6, "low": 0.5, "high": 0.7}, "exact_match": 0.4},
        },
        "history": [{"step": s, "loss": 2.0 / s, "eval_token_f1": 0.1 * s} for s in range(1, 6)],
        "confusion": {"labels": ["neg", "pos"], "matrix": [[5, 1], [2, 7]]},
        "calibration": {"ece": 0.1, "bins": calibration_bins([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]], [0, 0, 0], 5)},
        "lengths": {"prompt": [3, 5, 8, 8, 9, 12], "answer": [1, 2, 2, 4]},
        "samples": [{"prompt": "What is <b>?", "reference": "x", "before": "y", "after": "x"}],
        "paired": [{"a": "before", "b": "after", "metric": "token_f1", "difference": 0.3,
                    "low": 0.2, "high": 0.4, "p_value": 0.001, "within_noise": False}],
        "table": [{"system": "after", "latency_s": 0.12, "prompt_tokens": 40}],
        "recommendation": "Fine-tuning helps.",
    }


def test_render_html_embeds_plots_and_escapes():
    page = render_html(_report())
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 5  # bars, curves, confusion, reliability, lengths
    for data in images:
        assert base64.b64decode(data).startswith(b"\x89PNG")
    assert "What is &lt;b&gt;?" in page and "<b>?" not in page
    assert "http://" not in page and "https://" not in page  # nothing fetched from the network
    assert "0.6 [0.5, 0.7]" in page


def test_systems_of_accepts_before_after_and_plain_metrics():
    assert set(systems_of({"before": {"loss": 1.0}, "after": {"loss": 0.5}})) == {"before", "after"}
    assert systems_of({"metrics": {"accuracy": 0.9}}) == {"model": {"accuracy": {"value": 0.9}}}
    assert systems_of({}) == {}


def test_markdown_summary_lists_metrics_and_tests():
    md = markdown_summary(_report())
    assert "| token_f1 | 0.3 [0.2, 0.4] | 0.6 [0.5, 0.7] |" in md
    assert "significant" in md and "Fine-tuning helps." in md


def test_minimal_report_renders_without_plots(tmp_path):
    path = write_html_report(tmp_path / "r.html", {"title": "empty"})
    assert "<h1>empty</h1>" in path.read_text()


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("headless Chromium is required for the report rendering test: apt-get install -y chromium")


def _chromium_args(browser: str, profile) -> list[str]:
    return [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
            f"--user-data-dir={profile}"]


def test_report_renders_in_headless_chromium(tmp_path):
    from PIL import Image

    browser = _chromium()
    page = write_html_report(tmp_path / "report.html", _report())
    args = _chromium_args(browser, tmp_path / "profile")
    dom = subprocess.run(args + ["--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert len(re.findall(r"<img[^>]+src=\"data:image/png;base64,", dom.stdout)) == 5
    assert "Demo &lt;run&gt;" in dom.stdout

    shot = tmp_path / "shot.png"
    run = subprocess.run(args + [f"--screenshot={shot}", "--window-size=1200,2400", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    image = Image.open(io.BytesIO(shot.read_bytes())).convert("RGB")
    colors = image.getcolors(maxcolors=1_000_000) or []
    # measured: the same page without its plots has ~375 colours and ~3% non-white pixels;
    # with the plots ~1500 colours and ~10% non-white
    assert len(colors) > 800, len(colors)
    non_white = sum(count for count, rgb in colors if rgb != (255, 255, 255))
    assert non_white > 0.05 * image.width * image.height
