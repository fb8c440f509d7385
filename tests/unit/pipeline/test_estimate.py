"""`lmforge estimate` reads the method's hooks: every parameter trains (full), what trains otherwise,
and the storage bits of a quantized frozen base (MethodParams.frozen_bits)."""

from __future__ import annotations

import json

import pytest

from lmforge.train.estimate import FROZEN_BYTES


def _config(tmp_path, model_dir, method: str):
    from lmforge.config import load_config

    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"{q} {i}", "output": a}) + "\n"
                            for i, (q, a) in enumerate([("what is a bond", "a loan"), ("hello", "hi thanks")] * 4)))
    path = tmp_path / "run.yaml"
    path.write_text(f"run: {{name: t, output_dir: {tmp_path / 'run'}}}\nmodel: {{name: {model_dir}}}\n"
                    f"data: {{format: instruction, train: {data}, split: {{validation: 0.2, test: 0.2}}, max_length: 32}}\n"
                    f"method: {method}\ntrain: {{batch_size: 2}}\nruntime: {{device: cpu, precision: fp32}}\n")
    return load_config(path)


@pytest.mark.parametrize(("method", "bits"), [("{name: full}", 32), ("{name: lora, r: 4}", 32),
                                              ("{name: qlora, r: 4, bits: 4}", 4), ("{name: qlora, r: 4, bits: 8}", 8)])
def test_estimate_counts_what_the_method_trains_and_stores(tiny_llama_dir, tmp_path, method, bits):
    """What `lmforge estimate` counts (on the meta device) is what a real run trains, and the frozen rest is
    stored at the method's bits (qlora's quantized base) or the compute dtype."""
    from lmforge.methods.base import count_parameters
    from lmforge.pipeline import open_session, plan_run, run_estimate
    from lmforge.train.estimate_run import estimate_run

    config = _config(tmp_path, tiny_llama_dir, method)
    out = run_estimate(config, say=lambda _text: None)
    run = estimate_run(config, plan_run(config))
    s = open_session(config, say=lambda _text: None)
    trainable, _counted = count_parameters(s.model)
    assert run.trainable_params == trainable
    assert out["breakdown"]["optimizer"] == pytest.approx(trainable * 8.0)  # AdamW: m and v in fp32
    frozen = run.total_params - trainable
    assert (method == "{name: full}") == (frozen == 0)
    assert out["breakdown"]["weights"] == pytest.approx(trainable * 4.0 + frozen * FROZEN_BYTES[bits])


def test_estimate_says_what_max_length_cuts_in_its_sample(tiny_llama_dir, tmp_path):
    from lmforge.config import load_config
    from lmforge.pipeline import run_estimate

    config = _config(tmp_path, tiny_llama_dir, "{name: lora, r: 4}")
    said: list[str] = []
    run_estimate(config, say=said.append)
    assert not any("sample:" in line for line in said)  # everything fits in 32 tokens
    short = load_config(tmp_path / "run.yaml", ["data.max_length=12"])
    said = []
    run_estimate(short, say=said.append)
    notes = [line for line in said if line.startswith("  sample: ")]
    assert len(notes) == 1 and "at data.max_length=12" in notes[0] and "the longest is" in notes[0]
