"""The CLI on a pooled-head feature-extraction run (method freeze, head: pooled, cached features)."""

from __future__ import annotations

import json

from tests.e2e.conftest import run_cli, write_config


def test_pooled_head_run_trains_evaluates_and_exports(tmp_path, tiny_bert_dir, reviews_file):
    run = tmp_path / "pooled"
    cfg = write_config(tmp_path, f"""
run: {{output_dir: {run}}}
model: {{name: {tiny_bert_dir}}}
data: {{format: classification, train: {reviews_file}, columns: {{text: review, label: score}}, eval_fraction: 0.25, max_length: 16}}
method: {{name: freeze, head: pooled, pooling: mean, head_hidden: 8, head_dropout: 0.0, cache_features: true}}
train: {{epochs: 3, batch_size: 4, lr: 0.01, precision: fp32}}
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
