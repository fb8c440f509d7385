"""Drift is flagged for shifted traffic and not for in-distribution traffic (seeded, tiny model)."""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from lmforge.serve.drift import DriftRecorder, compute_baseline, read_window, save_baseline, text_statistics
from lmforge.serve.monitor import compare_to_baseline, format_report, psi, run_monitor
from tests.fixtures.tiny import WORDS
from tests.unit.serve.conftest import LiveServer, http


def texts(seed: int, n: int, lo: int = 4, hi: int = 10, junk: float = 0.0) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        words = []
        for _ in range(rng.randint(lo, hi)):
            if rng.random() < junk:
                words.append("".join(rng.choice("zxqjvk") for _ in range(5)))  # unknown to the vocab
            else:
                words.append(rng.choice(WORDS))
        out.append(" ".join(words))
    return out


@pytest.fixture(scope="module")
def tiny(tiny_llama_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return (AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval(),
            AutoTokenizer.from_pretrained(tiny_llama_dir))


@pytest.fixture(scope="module")
def baseline(tiny):
    return compute_baseline(*tiny, texts(0, 160))


def window(tiny, items) -> list[dict]:
    return text_statistics(*tiny, items)


def test_in_distribution_traffic_is_not_flagged(tiny, baseline):
    report = compare_to_baseline(window(tiny, texts(1, 80)), baseline)
    assert report["status"] == "ok", format_report(report)
    assert {s["signal"] for s in report["signals"]} == {"input_tokens", "unk_rate", "perplexity", "embedding"}


def test_shifted_traffic_is_flagged_per_signal(tiny, baseline):
    report = compare_to_baseline(window(tiny, texts(2, 80, lo=15, hi=30, junk=0.5)), baseline)
    flagged = {s["signal"] for s in report["signals"] if s["drift"]}
    assert report["drift"] and {"input_tokens", "unk_rate", "embedding"} <= flagged, format_report(report)
    lines = format_report(report)
    assert lines[0].startswith("drift monitor: drift") and any("DRIFT" in line for line in lines[1:])


def test_thresholds_are_per_signal(tiny, baseline):
    shifted = window(tiny, texts(2, 80, lo=15, hi=30))
    loose = {"input_tokens": {"psi": 1e9}}
    report = compare_to_baseline(shifted, baseline, loose)
    row = next(s for s in report["signals"] if s["signal"] == "input_tokens")
    assert not row["drift"] and row["threshold"]["psi"] == 1e9


def test_small_window_is_insufficient_data(tiny, baseline):
    assert compare_to_baseline(window(tiny, texts(3, 5)), baseline)["status"] == "insufficient_data"


def test_label_distribution_shift():
    base = {"n": 100, "scalars": {}, "embeddings": [], "labels": {"pos": 50, "neg": 50}}
    same = {"n": 40, "scalars": {}, "embeddings": [], "labels": {"pos": 21, "neg": 19}}
    skew = {"n": 40, "scalars": {}, "embeddings": [], "labels": {"pos": 38, "neg": 2}}
    assert not compare_to_baseline(same, base)["drift"]
    assert compare_to_baseline(skew, base)["drift"]


def test_psi_is_zero_for_identical_and_large_for_shifted():
    rng = np.random.default_rng(0)
    a = rng.normal(size=2000)
    assert psi(a, a) < 1e-9
    assert psi(a, a + 2) > 1.0


def test_server_window_matches_baseline_statistics_and_monitor_reads_files(tiny, baseline, tiny_llama_dir, tmp_path):
    from lmforge.config.serve import ServeConfig
    from lmforge.serve import create_app

    win = tmp_path / "traffic.jsonl"
    # float32 like the offline model: serve.dtype auto would serve bf16 weights on a CPU with native bf16
    live = LiveServer(create_app(Path(tiny_llama_dir), ServeConfig(model_name="tiny", dtype="float32",
                                                                   log={"enabled": False}), window_file=win))
    try:
        prompts = texts(4, 30)
        with ThreadPoolExecutor(6) as pool:
            list(pool.map(lambda p: http("POST", live.url + "/v1/completions",
                                         {"model": "tiny", "prompt": p, "max_tokens": 1}), prompts))
    finally:
        live.stop()
    recs = read_window(win)
    assert len(recs) == 30 and all(r["model"] == "tiny" for r in recs)
    by_len = {r["input_tokens"]: r for r in recs}
    offline = window(tiny, prompts)
    for rec in offline:  # the server measures an input exactly as compute_baseline does
        if rec["input_tokens"] in by_len:
            served = by_len[rec["input_tokens"]]
            if abs(served["perplexity"] - rec["perplexity"]) < 1e-3:
                break
    else:
        pytest.fail("no served record matches the offline statistics")
    base_file = save_baseline(tmp_path / "baseline.json", baseline)
    report = run_monitor(win, base_file)
    assert report["status"] == "ok", format_report(report)
    json.dumps(report)  # the report is JSON-able


def test_recorder_trims_to_window(tmp_path):
    rec = DriftRecorder(tmp_path / "w.jsonl", window_size=10)
    for i in range(25):
        rec.record({"input_tokens": i}, "m")
    kept = read_window(tmp_path / "w.jsonl")
    assert 10 <= len(kept) < 20 and kept[-1]["input_tokens"] == 24


def test_virtual_tokens_of_prompt_tuning_are_left_out_of_the_statistics(tiny_llama_dir):
    """Prompt / p-tuning prepend virtual tokens to the outputs: the statistics of a prompt-tuned model
    cover the input's own tokens (the perplexity and embedding of the same positions as the base)."""
    import torch
    from peft import PromptTuningConfig, TaskType, get_peft_model

    from lmforge.serve.drift import input_positions, row_statistics

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(tiny_llama_dir)
    batch = ["the food is good", "what is the capital of france"]
    plain = text_statistics(model, tok, batch)
    torch.manual_seed(0)
    tuned = get_peft_model(model, PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=5)).eval()
    rows = text_statistics(tuned, tok, batch)
    for text, row, base_row in zip(batch, rows, plain):
        assert row["input_tokens"] == base_row["input_tokens"] == len(tok(text)["input_ids"])
        assert len(row["embedding"]) == len(base_row["embedding"]) == model.config.hidden_size
        assert row["embedding"] != base_row["embedding"]  # the virtual tokens change the real tokens' states
    ids = torch.ones(1, 3, dtype=torch.long)
    hidden = torch.arange(7 * 2, dtype=torch.float).reshape(1, 7, 2)
    assert input_positions(hidden, 3).tolist() == hidden[:, 4:].tolist()
    assert row_statistics(None, hidden, ids, torch.ones_like(ids), None)[0]["embedding"] == [10.0, 11.0]
    with pytest.raises(ValueError):
        input_positions(hidden[:, :2], 3)
