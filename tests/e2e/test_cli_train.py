"""The real CLI end to end on a tiny Llama: train -> report -> export that plain peft/transformers load."""

from __future__ import annotations

import json
import re

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tests.e2e.conftest import WIDE_TEST, lora_config, run_cli, write_config


def test_train_reports_before_after_and_exports_loadable_models(tmp_path, tiny_llama_dir, qa_file):
    cfg = lora_config(tmp_path, tiny_llama_dir, qa_file, evaluate="{generations: 2, max_new_tokens: 8, generate_metrics: 3}",
                      split=WIDE_TEST)  # 3 distinct test questions: 2 distinct samples
    proc = run_cli("train", str(cfg))
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    results = json.loads((run / "results.json").read_text())
    assert results["after"]["eval_loss"] < results["before"]["eval_loss"]
    assert "perplexity" in results["after"]
    assert len(results["samples"]) == 2 and "before" in results["samples"][0]
    assert (run / "config.yaml").exists() and (run / "report.md").exists()
    events = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("loss" in e for e in events)
    evals = [e for e in events if "eval_loss" in e]  # task metrics at every evaluation, not only loss
    assert len(evals) >= 2 and all("token_f1" in e and "rougeL" in e for e in evals)

    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    merged = AutoModelForCausalLM.from_pretrained(run / "export" / "merged")
    tok = AutoTokenizer.from_pretrained(run / "export" / "merged")
    assert tok.chat_template
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama_dir), run / "export" / "adapter")
    ids = torch.tensor([tok("what is a bond?")["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, adapted(ids).logits, atol=1e-4, rtol=1e-4)
    card = (run / "export" / "README.md").read_text()
    assert "sha256" in card.lower() and str(tiny_llama_dir) in card


def test_existing_run_needs_resume_and_resume_finishes(tmp_path, tiny_llama_dir, qa_file):
    cfg = lora_config(tmp_path, tiny_llama_dir, qa_file)
    assert run_cli("train", str(cfg)).returncode == 0
    again = run_cli("train", str(cfg))
    assert again.returncode == 2 and "--resume" in again.stderr
    config_before = (tmp_path / "run" / "config.yaml").read_text()
    changed = run_cli("train", str(cfg), "train.lr=3e-4", "train.epochs=7", "--resume")
    assert changed.returncode == 2 and "Traceback" not in changed.stderr
    assert "2 settings differ" in changed.stderr and "train.epochs: " in changed.stderr and "-> 7" in changed.stderr
    assert "train.lr: 0.01 (the run) -> 0.0003 (now)" in changed.stderr, changed.stderr
    assert (tmp_path / "run" / "config.yaml").read_text() == config_before  # the record of the run is kept
    recorded = json.loads((tmp_path / "run" / "inputs.json").read_text())
    assert list(recorded) == [str(qa_file)] and len(recorded[str(qa_file)]["sha256"]) == 64
    original = qa_file.read_bytes()
    qa_file.write_bytes(original + b'{"question": "a new one?", "answer": "yes."}\n')  # data grew since the start
    moved = run_cli("train", str(cfg), "--resume")
    assert moved.returncode == 2 and "Traceback" not in moved.stderr
    assert f"{qa_file}: changed" in moved.stderr and "inputs.json" in moved.stderr
    qa_file.write_bytes(original)
    saved_config = tmp_path / "run" / "config.yaml"
    saved_config.write_text("written by hand\n")  # not a config lmforge wrote: nothing to compare, the resume goes on
    resumed = run_cli("train", str(cfg), "runtime.threads=1", "eval.generations=1", "--resume")  # where it runs,
    # and what is only reported after training, may change
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    # the run folder's config.yaml has every default filled in and trains the same model again
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["method"]["r"] == 4 and "target_modules" in saved["method"] and saved["objective"]["name"] == "causal_lm"
    again = run_cli("train", str(tmp_path / "run" / "config.yaml"), f"run.output_dir={tmp_path / 'again'}")
    assert again.returncode == 0, again.stderr[-2000:]
    first, second = (load_file(tmp_path / d / "export" / "adapter" / "adapter_model.safetensors") for d in ("run", "again"))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_classification_run(tmp_path, tiny_bert_dir, reviews_file):
    cfg = write_config(tmp_path, f"""
run: {{output_dir: {tmp_path / 'cls'}}}
model: {{name: {tiny_bert_dir}}}
data: {{format: classification, train: {reviews_file}, columns: {{text: review, label: score}}, split: {{validation: 0.2, test: 0.2}}, max_length: 16}}
method: {{name: full}}
train: {{epochs: 3, batch_size: 4, lr: 0.001}}
runtime: {{precision: fp32}}
export: {{formats: [onnx]}}
""")
    proc = run_cli("train", str(cfg))
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "cls" / "results.json").read_text())
    after = results["after"]
    assert after["accuracy"] >= results["before"]["accuracy"]
    assert {"precision_macro", "recall_macro", "f1_macro"} <= set(after)
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(tmp_path / "cls" / "export" / "merged")
    assert set(cfg.id2label.values()) == {"great", "other"}
    for folder in ("merged", "onnx"):  # every export is parity-checked against the evaluated model
        parity = json.loads((tmp_path / "cls" / "export" / folder / "parity.json").read_text())
        assert parity["passed"] is True


@pytest.mark.parametrize(
    "extra, field",
    [("train: {batchsize: 2}", "did you mean 'batch_size'"), ("export: {merged: true}\nmethod: {name: nope}", "unknown method")],
)
def test_config_errors_exit_2(tmp_path, tiny_llama_dir, qa_file, extra, field):
    cfg = write_config(tmp_path, f"model: {{name: {tiny_llama_dir}}}\ndata: {{format: instruction, train: {qa_file}}}\n{extra}\n")
    proc = run_cli("validate", str(cfg))
    assert proc.returncode == 2 and field in proc.stderr and "Traceback" not in proc.stderr


def test_eval_of_a_run_on_new_data_writes_a_report(tmp_path, tiny_llama_dir, qa_file):
    cfg = lora_config(tmp_path, tiny_llama_dir, qa_file)
    assert run_cli("train", str(cfg)).returncode == 0
    proc = run_cli("eval", str(tmp_path / "run"), "--data", str(qa_file), "--generate", "3", "eval.max_new_tokens=6")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "run" / "eval"
    results = json.loads((out / "results.json").read_text())
    assert results["after"]["eval_examples"] == 24
    shown = dict(parts for line in proc.stdout.splitlines() if len(parts := line.split(None, 1)) == 2)
    assert shown["eval_examples"] == "24 (6 distinct)"  # the file is six questions four times each
    assert re.fullmatch(r"\d+\.\d{4}  \[\d+\.\d{4}, \d+\.\d{4}\]", shown["eval_loss"])
    assert {"exact_match", "token_f1", "rougeL", "bleu"} <= set(results["generation"])
    assert "<img" in (out / "report.html").read_text()
    missing = run_cli("eval", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
