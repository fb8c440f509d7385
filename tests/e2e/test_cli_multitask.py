"""Multi-task runs through the real CLI: two classification heads on tiny BERT; two instruction tasks on tiny Llama."""

import json

import pytest

from tests.e2e.conftest import QA, run_cli, write_config


@pytest.fixture
def topics_file(tmp_path):
    path = tmp_path / "topics.jsonl"
    rows = [{"q": w, "topic": t} for w, t in [("bond fund", "money"), ("interest rate", "money"), ("capital city", "place"),
                                              ("france paris", "place"), ("stock share", "money"), ("bank credit", "money"),
                                              ("city capital", "place"), ("paris is", "place")] * 2]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_two_classification_tasks_train_eval_export(tmp_path, tiny_bert_dir, reviews_file, topics_file):
    run = tmp_path / "mt"
    cfg = write_config(tmp_path, f"""
run: {{output_dir: {run}}}
model: {{name: {tiny_bert_dir}}}
data:
  format: classification
  max_length: 16
  split: {{validation: 0.2, test: 0.2}}
  mixing: interleave
  tasks:
    - {{name: sentiment, train: {reviews_file}, columns: {{text: review, label: score}}}}
    - {{name: topic, train: {topics_file}, columns: {{text: q, label: topic}}, weight: 2}}
method: {{name: full}}
train: {{max_steps: 4, batch_size: 4, lr: 0.001, log_every: 2}}
runtime: {{precision: fp32}}
""")
    valid = run_cli("validate", str(cfg))
    assert valid.returncode == 0 and "2 tasks, mixing interleave" in valid.stdout
    preview = run_cli("data", "preview", str(cfg), "-n", "1")
    assert preview.returncode == 0, preview.stderr[-2000:]
    assert "=== task sentiment" in preview.stdout and "=== task topic" in preview.stdout

    proc = run_cli("train", str(cfg))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "task topic: 8 train / 4 validation / 4 test" in proc.stdout
    results = json.loads((run / "results.json").read_text())
    after = results["after"]
    for name in ("sentiment", "topic"):
        assert {f"task/{name}/accuracy", f"task/{name}/f1_macro", f"task/{name}/eval_loss"} <= set(after)
    assert after["tasks"]["topic"]["labels"] == ["money", "place"]
    assert after["tasks"]["sentiment"]["labels"] == ["great", "other"]
    assert set(results["data"]["tasks"]) == {"sentiment", "topic"}
    assert "task/topic/accuracy" in (run / "report.md").read_text()
    parity = json.loads((run / "export" / "multitask" / "parity.json").read_text())
    assert parity["passed"] is True
    assert not (run / "export" / "merged").exists()

    evaluated = run_cli("eval", str(run))
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    again = json.loads((run / "eval" / "results.json").read_text())["after"]
    assert again["task/topic/accuracy"] == pytest.approx(after["task/topic/accuracy"])

    from lmforge.config.serve import ServeConfig
    from lmforge.errors import UserError
    from lmforge.serve.store import resolve_target

    with pytest.raises(UserError, match="multi-head"):  # `lmforge serve RUN` refuses it clearly
        resolve_target(run, ServeConfig())


def test_mixed_instruction_tasks_report_loss_per_task(tmp_path, tiny_llama_dir):
    finance, general = tmp_path / "finance.jsonl", tmp_path / "general.jsonl"
    finance.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in QA * 2))
    general.write_text("".join(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
                               + "\n" for q, a in reversed(QA * 2)))
    run = tmp_path / "lm"
    cfg = write_config(tmp_path, f"""
run: {{output_dir: {run}}}
model: {{name: {tiny_llama_dir}}}
data:
  format: instruction
  max_length: 64
  split: {{validation: 0.2, test: 0.2}}
  mixing: temperature
  tasks:
    - {{name: finance, train: {finance}, columns: {{instruction: question, output: answer}}, system_prompt: be brief.}}
    - {{name: general, format: chat, train: {general}}}
method: {{name: lora, r: 4, alpha: 8}}
train: {{max_steps: 2, batch_size: 4}}
runtime: {{precision: fp32}}
eval: {{generations: 1, max_new_tokens: 4}}
""")
    proc = run_cli("train", str(cfg))
    assert proc.returncode == 0, proc.stderr[-3000:]
    after = json.loads((run / "results.json").read_text())["after"]
    assert {"eval_loss", "perplexity", "task/finance/eval_loss", "task/general/perplexity"} <= set(after)
    assert "mixing (temperature): finance" in proc.stdout
