"""lmforge ui in a real browser: headless Chromium driven by selenium through Debian's chromedriver.

On the tiny Llama: a run trains live (steps slowed by a test-only callback) while the runs page
shows its step counter advance and its phase change; its report opens; a run launched from the
form trains to the end; the two are compared; two browser sessions give feedback at once; the
data preview and the playground answer. A screenshot of every page is saved (the path is printed).

Needs `apt-get install chromium chromium-driver` (the Makefile's `browser` target): a missing
browser FAILS these tests rather than skipping them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import QA
from tests.unit.serve.conftest import LiveServer

ROOT = Path(__file__).resolve().parents[2]
STEPS = 40
STEP_DELAY_S = 0.25


def _binary(names: tuple[str, ...], package: str) -> str:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(f"{names[0]} is required for the dashboard browser tests: apt-get install -y {package}")


def new_browser(profile: Path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # selenium must not look for a driver online
    options = webdriver.ChromeOptions()
    options.binary_location = _binary(("chromium", "chromium-browser"), "chromium")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,1000", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(_binary(("chromedriver",), "chromium-driver")), options=options)
    driver.set_page_load_timeout(120)
    return driver


def js(driver, script: str, *args):
    """Run ``script`` in the page (reads survive the DOM swaps that make element handles stale)."""
    return driver.execute_script(script, *args)


def text_of(driver, selector: str) -> str | None:
    return js(driver, "const e = document.querySelector(arguments[0]); return e ? e.textContent.trim() : null;",
              selector)


def wait_for(condition, timeout: float = 120.0, every: float = 0.1, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def config_text(runs_dir: Path, model_dir: Path, data: Path, name: str) -> str:
    return f"""
run: {{name: {name}, output_dir: {runs_dir / name}}}
model: {{name: {model_dir}}}
data:
  format: instruction
  train: {data}
  columns: {{instruction: question, output: answer}}
  split: {{validation: 0.2, test: 0.34}}  # 6 distinct questions: 3 train, 1 validation, 2 test
  max_length: 64
method: {{name: lora, r: 4, alpha: 8, dropout: 0.0}}
train: {{max_steps: {STEPS}, batch_size: 4, lr: 0.01, eval_every: 10, log_every: 2}}
runtime: {{precision: fp32}}
eval: {{generations: 2, max_new_tokens: 8}}
"""


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ui-screenshots")
    print(f"\nlmforge ui screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_llama_dir):
    root = tmp_path_factory.mktemp("ui_e2e")
    runs = root / "runs"
    runs.mkdir()
    data = root / "qa.jsonl"
    data.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in QA * 4))
    config = root / "alpha.yaml"
    config.write_text(config_text(runs, Path(tiny_llama_dir), data, "alpha"))
    return {"root": root, "runs": runs, "config": config}


@pytest.fixture(scope="module")
def live_run(workspace):
    """A real tiny training run, each step slowed, started in the background."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")])}
    log = open(workspace["root"] / "alpha.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "tests.fixtures.slow_train", str(workspace["config"]),
                             str(STEP_DELAY_S)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    yield proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    log.close()


@pytest.fixture(scope="module")
def ui(workspace):
    from lmforge.ui.app import UISettings, create_app

    server = LiveServer(create_app(UISettings(runs_dir=workspace["runs"], sse_interval_s=0.3)))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(workspace):
    driver = new_browser(workspace["root"] / "profile-1")
    yield driver
    driver.quit()


def test_runs_page_follows_a_live_run(ui, browser, live_run, workspace, shots):
    browser.get(ui.url + "/")
    panel = '.live-panel[data-run="alpha"]'
    first = int(wait_for(lambda: (text_of(browser, panel + " .step") or "").isdigit() and text_of(browser, panel + " .step"),
                         what="the live run's step counter"))
    wait_for(lambda: int(text_of(browser, panel + " .step") or 0) > first, timeout=60, what="the step counter to advance")
    wait_for(lambda: int(text_of(browser, panel + " .step") or 0) >= 12 or text_of(browser, panel + " .step") is None,
             timeout=60, what="curves to draw")
    browser.save_screenshot(str(shots / "1-runs-live.png"))
    phases = []

    def finished():
        phase = js(browser, "const e = document.querySelector(arguments[0]); return e ? e.dataset.phase : null;",
                   panel + " .phase")
        if phase and (not phases or phases[-1] != phase):
            phases.append(phase)
        return text_of(browser, 'tr[data-run="alpha"] .state') == "finished"

    wait_for(finished, timeout=180, what="the run to finish")
    assert phases[0] == "train" and any(p in phases for p in ("after-eval", "export", "parity")), phases
    assert live_run.wait(timeout=60) == 0, (workspace["root"] / "alpha.log").read_text()[-3000:]
    browser.save_screenshot(str(shots / "2-runs-finished.png"))
    assert text_of(browser, 'tr[data-run="alpha"] .state') == "finished"  # the page turned it without a reload
    row = text_of(browser, 'tr[data-run="alpha"]')
    assert "eval_loss" in row and "lora" in row and "causal_lm" in row and "[" in row  # metric with its interval
    status = json.loads((workspace["runs"] / "alpha" / "status.json").read_text())
    assert (status["phase"], status["step"], status["total_steps"]) == ("done", STEPS, STEPS)


def test_run_page_and_report(ui, browser, workspace, shots):
    browser.get(ui.url + "/runs/alpha")
    assert text_of(browser, "#run-state") == "finished"
    assert "lmforge serve" in text_of(browser, "#serve-line")
    assert "PeftModel.from_pretrained" in text_of(browser, ".usage")
    assert js(browser, "return [...document.querySelectorAll('.report h2')].map(h => h.textContent)")[:1] == ["Metrics"]
    browser.save_screenshot(str(shots / "3-run.png"))
    browser.find_element("id", "report-link").click()
    wait_for(lambda: browser.current_url.endswith("/runs/alpha/report.html"), what="the report")
    assert (text_of(browser, "h1") or "").startswith("lmforge run:")
    browser.save_screenshot(str(shots / "4-report.png"))


def test_launch_a_run_from_the_form(ui, browser, workspace, shots):
    from selenium.webdriver.common.keys import Keys

    browser.get(ui.url + "/runs/alpha/new")
    name = browser.find_element("id", "new-name")
    name.clear()
    name.send_keys("beta")
    overrides = browser.find_element("id", "overrides")
    overrides.send_keys("train.max_steps=abc")
    wait_for(lambda: js(browser, "const e = document.getElementById('validation-result');"
                                 "return e && e.dataset.ok === 'false' && e.textContent.includes('train.max_steps');"),
             what="the validation error")
    overrides.send_keys(Keys.CONTROL, "a")
    overrides.send_keys(Keys.DELETE)
    overrides.send_keys("train.max_steps=4\ntrain.eval_every=2")
    wait_for(lambda: js(browser, "const e = document.getElementById('validation-result');"
                                 "return e && e.dataset.ok === 'true';"), what="the config to validate")
    browser.save_screenshot(str(shots / "5-new-run.png"))
    browser.find_element("id", "launch-button").click()
    wait_for(lambda: browser.current_url.endswith("/runs/beta"), what="the new run's page")
    wait_for(lambda: text_of(browser, "#run-state") == "finished", timeout=240, what="the launched run to finish")
    browser.save_screenshot(str(shots / "6-launched-run.png"))
    folder = workspace["runs"] / "beta"
    assert json.loads((folder / "status.json").read_text())["phase"] == "done"
    assert "max_steps: 4" in (folder / "config.yaml").read_text() and (folder / "export" / "adapter").is_dir()
    browser.get(ui.url + "/")
    wait_for(lambda: text_of(browser, 'tr[data-run="beta"] .state') == "finished", what="beta on the runs page")


def test_compare_two_runs(ui, browser, shots):
    browser.get(ui.url + "/")
    for name in ("alpha", "beta"):
        browser.find_element("css selector", f'input[name="run"][value="{name}"]').click()
    browser.find_element("id", "compare-button").click()
    wait_for(lambda: "/compare?" in browser.current_url, what="the compare page")
    heads = js(browser, "return [...document.querySelectorAll('#compare-metrics th')].map(h => h.textContent)")
    assert heads[1:] == ["alpha", "beta"] or heads[1:] == ["beta", "alpha"]
    assert "eval_loss" in text_of(browser, "#paired") and "noise" in text_of(browser, "#paired")
    assert js(browser, "return document.querySelectorAll('svg.chart').length") >= 2
    assert js(browser, "return document.querySelectorAll('#same-prompts tr').length") == 3  # header + 2 prompts
    browser.save_screenshot(str(shots / "7-compare.png"))


def test_feedback_from_two_browser_sessions_at_once(ui, browser, workspace, shots):
    second = new_browser(workspace["root"] / "profile-2")
    errors = []

    def annotate(driver, who: str, edit: str | None):
        try:
            driver.get(ui.url + f"/feedback/alpha?annotator={who}")
            for number in (1, 2):
                wait_for(lambda: f"Item {number} of 2 for {who}" in (js(driver, "return document.body.textContent") or ""),
                         what=f"{who}'s item {number}")
                if number == 1:
                    driver.save_screenshot(str(shots / f"8-feedback-judging-{who}.png"))
                driver.find_element("css selector", 'input[name="choice"][value="A"]').click()
                if edit and number == 1:
                    driver.find_element("css selector", 'textarea[name="edit"]').send_keys(edit)
                driver.find_element("id", "submit-judgement").click()
                wait_for(lambda: text_of(driver, "#feedback-message") == "saved" and
                         f"Item {number} of 2" not in (js(driver, "return document.body.textContent") or ""),
                         what=f"{who}'s judgement {number} to save")
            driver.save_screenshot(str(shots / f"8-feedback-{who}.png"))
        except Exception as exc:  # reported by the main thread
            errors.append(exc)

    try:
        threads = [threading.Thread(target=annotate, args=(browser, "alice", "a loan.\nto a company.")),
                   threading.Thread(target=annotate, args=(second, "bob", None))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        browser.get(ui.url + "/feedback/alpha?annotator=alice")
        assert "alice judged all 2 items" in text_of(browser, "#all-done")
        assert "alice / bob" in text_of(browser, "#agreement")
        browser.save_screenshot(str(shots / "9-feedback-agreement.png"))
    finally:
        second.quit()
    folder = workspace["runs"] / "feedback" / "alpha"
    rows = [json.loads(line) for line in (folder / "judgements.jsonl").read_text().splitlines()]
    assert sorted((r["provenance"]["annotator"], r["provenance"]["item"]) for r in rows) == sorted(
        {(r["provenance"]["annotator"], r["provenance"]["item"]) for r in rows}) and len(rows) == 4
    assert any(r["edit"] == "a loan.\nto a company." for r in rows)
    prefs = [json.loads(line) for line in (folder / "preferences.jsonl").read_text().splitlines()]
    assert prefs and all(set(p) == {"prompt", "chosen", "rejected", "provenance"} for p in prefs)


def test_data_preview_and_playground(ui, browser, shots):
    browser.get(ui.url + "/data/alpha")
    assert js(browser, "return document.querySelectorAll('#preview mark.trained').length") == 3
    browser.save_screenshot(str(shots / "10-data.png"))
    browser.get(ui.url + "/playground/alpha")
    browser.find_element("css selector", 'textarea[name="message"]').send_keys("what is a bond?")
    browser.find_element("id", "chat-send").click()
    wait_for(lambda: js(browser, "return document.querySelectorAll('#chat-answers .answer').length") == 2,
             timeout=180, what="both answers")
    sides = js(browser, "return [...document.querySelectorAll('#chat-answers .answer')].map(e => e.dataset.side)")
    assert sides == ["base", "tuned"]
    assert "no traffic window file" in text_of(browser, "#drift-note")
    browser.save_screenshot(str(shots / "11-playground.png"))
