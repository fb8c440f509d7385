"""`lmforge compare` end to end on the tiny Llama: train a few steps with the CLI, then compare."""

from __future__ import annotations

import json

from tests.e2e.conftest import lora_config, run_cli, write_config


def _config(tmp_path, model_dir, data):
    return lora_config(tmp_path, model_dir, data,
                       train="{max_steps: 4, batch_size: 4, lr: 0.01, log_every: 2}",
                       evaluate="{generations: 1, max_new_tokens: 6, max_examples: 4}")


def test_compare_after_training_writes_reports_and_recommends(tmp_path, tiny_llama_dir, qa_file):
    cfg = _config(tmp_path, tiny_llama_dir, qa_file)
    trained = run_cli("train", str(cfg))
    assert trained.returncode == 0, trained.stderr[-3000:]
    proc = run_cli("compare", str(cfg), "--retrievers", "bm25", "--few-shot", "2", "--top-k", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    report = json.loads((run / "compare.json").read_text())
    assert set(report["systems"]) == {"base zero-shot", "base 2-shot", "base + bm25 RAG", "fine-tuned",
                                      "fine-tuned + bm25 RAG"}
    # the data is six questions four times each: copies among the 4 held-out rows are answered once
    distinct = report["systems"]["fine-tuned"]["token_f1"]["n"]
    for scores in report["systems"].values():
        cell = scores["token_f1"]
        assert cell["low"] <= cell["value"] <= cell["high"] and cell["n"] == distinct
    copies = [note for note in report["notes"] if "exact copies" in note]
    assert 1 <= distinct <= 4 and len(copies) == (distinct < 4)
    assert all(f"{4 - distinct} exact copies among the 4 held-out examples left out" in note for note in copies)
    rag = next(r for r in report["table"] if r["system"] == "base + bm25 RAG")
    zero = next(r for r in report["table"] if r["system"] == "base zero-shot")
    assert rag["prompt_tokens"] > zero["prompt_tokens"]  # retrieved passages are in the prompt
    assert report["recommendation"] and report["recommendation"] in proc.stdout
    assert "fine-tuned + bm25 RAG" in proc.stdout and "token_f1" in proc.stdout
    page = (run / "compare.html").read_text()
    assert "data:image/png;base64," in page and "fine-tuned" in page
    assert (run / "compare.md").read_text().startswith("# lmforge compare")
    # training wrote the run's HTML report too
    assert 'alt="training curves"' in (run / "report.html").read_text()

    # RAG over the user's own documents: a folder of notes, cut into passages; the notes are not touched
    docs = tmp_path / "handbook"
    docs.mkdir()
    (docs / "bonds.md").write_text("# Bonds\n\nA bond is a loan to a company or a government.\n\n" + "Coupons pay. " * 150)
    (docs / "stocks.txt").write_text("A stock is a share of a company.\n")
    before = {f.name: f.read_bytes() for f in docs.iterdir()}
    own = run_cli("compare", str(cfg), "--retrievers", "bm25", "--few-shot", "0", "--documents", str(docs))
    assert own.returncode == 0, own.stderr[-3000:]
    report = json.loads((run / "compare.json").read_text())
    assert report["config"]["retrieval_corpus"] == f"5 passages of {docs}"  # 300 words of coupons: 3 passages
    assert f"retrieval over 5 passages of {docs}" in own.stdout
    assert {f.name: f.read_bytes() for f in docs.iterdir()} == before
    missing = run_cli("compare", str(cfg), "--documents", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "nope" in missing.stderr and "Traceback" not in missing.stderr


def test_compare_without_a_trained_run_is_a_user_error(tmp_path, tiny_llama_dir, qa_file):
    cfg = _config(tmp_path, tiny_llama_dir, qa_file)
    proc = run_cli("compare", str(cfg))
    assert proc.returncode == 2
    assert "no trained run" in proc.stderr and "lmforge train" in proc.stderr and "Traceback" not in proc.stderr


def test_compare_on_classification_data_is_a_user_error(tmp_path, tiny_bert_dir, reviews_file):
    cfg = write_config(tmp_path, f"""
run: {{output_dir: {tmp_path / 'cls'}}}
model: {{name: {tiny_bert_dir}}}
data: {{format: classification, train: {reviews_file}, columns: {{text: review, label: score}}}}
method: {{name: full}}
""")
    proc = run_cli("compare", str(cfg))
    assert proc.returncode == 2
    assert "chat or instruction" in proc.stderr and "Traceback" not in proc.stderr
