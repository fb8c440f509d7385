"""Bad input: a clear message naming file/line/field, exit status 2, no traceback, nothing of the user's changed."""

from __future__ import annotations

import hashlib

from tests.e2e.conftest import run_cli, write_config


def _cfg(tmp_path, model, data, fmt="instruction", extra=""):
    return write_config(tmp_path, f"""
run: {{output_dir: {tmp_path / 'run'}}}
model: {{name: {model}}}
data: {{format: {fmt}, train: {data}, columns: {{instruction: question, output: answer}}}}
train: {{max_steps: 1}}
{extra}
""")


def _assert_user_error(proc, *needles):
    assert proc.returncode == 2, proc.stdout[-1000:] + proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in proc.stderr, proc.stderr


def test_malformed_json_line(tmp_path, tiny_llama_dir):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"question": "a", "answer": "b"}\n{"question": "c", "answer": \n')
    before = hashlib.sha256(data.read_bytes()).hexdigest()
    _assert_user_error(run_cli("train", str(_cfg(tmp_path, tiny_llama_dir, data))), "bad.jsonl:2")
    assert hashlib.sha256(data.read_bytes()).hexdigest() == before


def test_missing_column(tmp_path, tiny_llama_dir):
    data = tmp_path / "qa.jsonl"
    data.write_text('{"questions": "a", "answer": "b"}\n' * 4)
    _assert_user_error(run_cli("train", str(_cfg(tmp_path, tiny_llama_dir, data))), "qa.jsonl:1", "question")


def test_non_utf8_file(tmp_path, tiny_llama_dir):
    data = tmp_path / "latin.jsonl"
    data.write_bytes('{"question": "caf\xe9", "answer": "b"}\n'.encode("latin-1"))
    _assert_user_error(run_cli("train", str(_cfg(tmp_path, tiny_llama_dir, data))), "latin.jsonl", "UTF-8")


def test_empty_dataset(tmp_path, tiny_llama_dir):
    data = tmp_path / "empty.jsonl"
    data.write_text("")
    _assert_user_error(run_cli("train", str(_cfg(tmp_path, tiny_llama_dir, data))), "empty.jsonl")


def test_unknown_model(tmp_path, qa_file):
    _assert_user_error(run_cli("train", str(_cfg(tmp_path, "smollm2-135m-instruc", qa_file))), "smollm2-135m-instruct")


def test_unknown_label(tmp_path, tiny_bert_dir):
    data = tmp_path / "cls.csv"
    data.write_text("text,label\ngood,pos\nbad,neg\nok,neutrl\n")
    cfg = write_config(tmp_path, f"""
model: {{name: {tiny_bert_dir}}}
data: {{format: classification, train: {data}, labels: [pos, neg, neutral]}}
""")
    _assert_user_error(run_cli("train", str(cfg), cwd=tmp_path), "cls.csv", "neutrl")  # run folder: tmp_path/runs/run


def test_incompatible_options(tmp_path, tiny_llama_dir, qa_file):
    cfg = _cfg(tmp_path, tiny_llama_dir, qa_file, fmt="classification")
    _assert_user_error(run_cli("validate", str(cfg)), "data.columns")


def test_missing_config_file(tmp_path):
    _assert_user_error(run_cli("train", str(tmp_path / "nope.yaml")), "nope.yaml")


def test_cli_output_carries_no_third_party_import_noise():
    done = run_cli("methods")
    assert done.returncode == 0
    assert "Failed to load" not in done.stderr and "register_constant" not in done.stderr
    assert "is deprecated" not in done.stderr
