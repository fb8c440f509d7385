"""The CLI on a pooled-head feature-extraction run (method freeze, head: pooled, cached features)."""

from __future__ import annotations

import json

from tests.e2e.conftest import run_cli, write_config


def test_pooled_head_run_trains_evaluates_and_exports(tmp_path, tiny_bert_dir, reviews_file):
    run = tmp_path / "pooled"
    cfg = write_config(tmp_path, f"""
run: {{output_dir: {run}}}
model: {{name: {tiny_bert_dir}}}
data: {{format: classification, train: {reviews_file}, columns: {{text: review, label: score}}, split: {{validation: 0.2, test: 0.2}}, max_length: 16}}
method: {{name: freeze, head: pooled, pooling: mean, head_hidden: 8, head_dropout: 0.0, cache_features: true}}
train: {{epochs: 3, batch_size: 4, lr: 0.01}}
runtime: {{precision: fp32}}
""")
    proc = run_cli("train", str(cfg))
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((run / "results.json").read_text())
    assert results["after"]["accuracy"] >= results["before"]["accuracy"]
    export = run / "export"
    manifest = json.loads((export / "adapter" / "freeze_manifest.json").read_text())
    assert manifest["pooled_head"]["pooling"] == "mean"
    assert set(manifest["pooled_head"]["id2label"].values()) == {"great", "other"}
    assert all(name.startswith("head.") for name in manifest["tensors"])
    assert not (export / "merged").exists()  # a pooled head has no merged transformers model

    proc = run_cli("eval", str(run))  # rebuilds the run from its folder and scores the held-out set
    assert proc.returncode == 0, proc.stderr[-3000:]
    evaluated = json.loads((run / "eval" / "results.json").read_text())
    assert abs(evaluated["after"]["accuracy"] - results["after"]["accuracy"]) < 1e-9

    proc = run_cli("export", str(run))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (export / "adapter" / "freeze_weights.safetensors").is_file()

    from pathlib import Path

    from lmforge.config.serve import ServeConfig
    from lmforge.serve import create_app
    from tests.unit.serve.conftest import LiveServer, http

    live = LiveServer(create_app(Path(run), ServeConfig(model_name="clf", log={"enabled": False},
                                                        drift={"enabled": False})))
    try:
        status, body = http("POST", live.url + "/v1/classify", {"model": "clf", "input": ["great food i love it"]},
                            key=None)
    finally:
        live.stop()
    assert status == 200, body
    probs = body["data"][0]["probabilities"]
    assert set(probs) == {"great", "other"} and abs(sum(probs.values()) - 1) < 1e-5


def _solved_config(tmp_path, tiny_bert_dir, reviews_file, name: str, seed: int = 7):
    (tmp_path / name).mkdir(exist_ok=True)
    return write_config(tmp_path / name, f"""
run: {{output_dir: {tmp_path / name / 'run'}, seed: {seed}}}
model: {{name: {tiny_bert_dir}}}
data: {{format: classification, train: {reviews_file}, columns: {{text: review, label: score}}, split: {{validation: 0.2, test: 0.2}}, max_length: 16}}
method: {{name: freeze, head: pooled, cache_features: true}}
train: {{epochs: 2, batch_size: 4}}
runtime: {{precision: fp32}}
""")


def test_a_linear_pooled_head_is_solved_deterministically_and_the_run_folder_works(tmp_path, tiny_bert_dir,
                                                                                     reviews_file):
    """head: pooled with a linear head: L-BFGS replaces the loop; the same seed gives the same weights and
    the same before / after metrics (the head's initialisation comes from run.seed); eval / resume work."""
    from safetensors.torch import load_file

    runs = []
    for name in ("a", "b"):
        proc = run_cli("train", str(_solved_config(tmp_path, tiny_bert_dir, reviews_file, name)))
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "solved the head on 16 training examples" in proc.stdout and "16 train / 4 validation" in proc.stdout and "(L2: C 1, method.c)" in proc.stdout
        runs.append(tmp_path / name / "run")
    results = [json.loads((run / "results.json").read_text()) for run in runs]
    for key in ("before", "after"):
        assert {k: v for k, v in results[0][key].items() if k != "per_example"} == \
               {k: v for k, v in results[1][key].items() if k != "per_example"}
    weights = [load_file(str(run / "export" / "adapter" / "freeze_weights.safetensors")) for run in runs]
    assert weights[0].keys() == weights[1].keys() == {"head.1.weight", "head.1.bias"}
    assert all((weights[0][k] == weights[1][k]).all() for k in weights[0])
    fit = results[0]["train"]["fit"]
    assert fit["fit"] == "lbfgs" and fit["c"] == 1.0 and fit["folds"] == 0 and fit["iterations"] > 0
    assert results[0]["after"]["accuracy"] == 1.0  # two separable phrasings: a solved head gets them all
    events = [json.loads(line) for line in (runs[0] / "metrics.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events] == ["train", "eval"] and events[1]["step"] == 1

    proc = run_cli("eval", str(runs[0]))
    assert proc.returncode == 0, proc.stderr[-3000:]
    evaluated = json.loads((runs[0] / "eval" / "results.json").read_text())
    assert evaluated["after"]["f1_macro"] == results[0]["after"]["f1_macro"]
    proc = run_cli("train", str(_solved_config(tmp_path, tiny_bert_dir, reviews_file, "a")), "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = load_file(str(runs[0] / "export" / "adapter" / "freeze_weights.safetensors"))
    assert all((again[k] == weights[0][k]).all() for k in again)

    other = run_cli("train", str(_solved_config(tmp_path, tiny_bert_dir, reviews_file, "c", seed=8)))
    assert other.returncode == 0, other.stderr[-3000:]
    before_c = json.loads((tmp_path / "c" / "run" / "results.json").read_text())["before"]
    assert before_c["eval_loss"] != results[0]["before"]["eval_loss"]  # another seed, another initial head
