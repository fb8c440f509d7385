"""`lmforge validate`: every problem of a config and of the first records of its data, in one run, without torch."""

from __future__ import annotations

import json
import subprocess
import sys

from lmforge.pipeline.validate import validate_config

QA = json.dumps({"question": "what is a bond?", "answer": "a loan."}) + "\n"


def _write(tmp_path, text: str, files: dict[str, str] | None = None):
    for name, content in (files or {"qa.jsonl": QA}).items():
        (tmp_path / name).write_text(content)
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_every_problem_is_reported_in_one_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, """
model: {name: x}
data: {format: chat, train: qa.jsonl, test: missing.jsonl}
train: {learning_rate: 0.1, num_epochs: 2}
method: {name: lora, lora_r: 8}
""")
    errors = validate_config(path).errors
    expected = ["train.learning_rate: unknown key; did you mean 'lr'?", "train.num_epochs: unknown key; did you mean 'epochs'?",
                "method.lora_r: unknown key; did you mean 'r'?", "data.train: qa.jsonl:1: missing column 'messages'",
                "data.test: missing.jsonl: no such file or folder"]
    assert len(errors) == len(expected), errors
    for want, got in zip(expected, errors):
        assert got.startswith(want), (want, got)


def test_a_bad_key_in_a_required_section_does_not_hide_the_others(tmp_path, monkeypatch):
    """An invalid key in data (a required section) used to drop the whole section, so the config could not be
    built and the method's and the data's own problems were not looked at until the next run."""
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, """
model: {name: x}
data: {format: instruction, train: missing.jsonl, max_lenght: 128}
train: {epochs: many}
method: {name: lora, rank: 8}
""")
    errors = validate_config(path).errors
    expected = ["data.max_lenght: unknown key; did you mean 'max_length'?", "train.epochs: Input should be a valid number",
                "method.rank: unknown key; did you mean 'r'?", "data.train: missing.jsonl: no such file or folder"]
    assert len(errors) == len(expected), errors
    for want, got in zip(expected, errors):
        assert got.startswith(want), (want, got)


def test_a_valid_config_with_its_data_is_ok(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, "model: {name: x}\ndata: {format: instruction, train: qa.jsonl, "
                            "columns: {instruction: question, output: answer}}\n")
    result = validate_config(path)
    assert not result.errors and result.plan.method.name == "lora"


def test_later_records_are_read_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, "model: {name: x}\ndata: {format: instruction, train: qa.jsonl, "
                            "columns: {instruction: question, output: answer}}\n",
                  {"qa.jsonl": QA * 3 + json.dumps({"question": "x"}) + "\n"})
    (error,) = validate_config(path).errors
    assert error.startswith("data.train: qa.jsonl:4: missing column 'answer'")


def test_every_source_and_task_is_checked(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, """
model: {name: x}
data:
  format: classification
  tasks:
    - {name: a, train: a.csv}
    - {name: b, train: b.csv, test: c.jsonl}
""", {"a.csv": "text,label\nx,y\n", "b.csv": "txt,label\nx,y\n", "c.jsonl": '{"text": "x", "label": "y"}\n{bad\n'})
    errors = validate_config(path).errors
    assert [e.split(":")[0] for e in errors] == ["data.tasks.1.train", "data.tasks.1.test"], errors
    assert "b.csv:2" in errors[0] and "c.jsonl:2" in errors[1]


def test_hub_ids_are_noted_not_read(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _write(tmp_path, "model: {name: x}\ndata: {format: text, train: someone/dataset}\n")
    result = validate_config(path)
    assert not result.errors and "not checked" in result.notes[0]


def test_validate_cli_lists_all_problems_and_exits_2(tmp_path):
    path = _write(tmp_path, "model: {name: x}\ndata: {format: chat, train: qa.jsonl}\ntrain: {batchsize: 2}\n")
    proc = subprocess.run([sys.executable, "-m", "lmforge.cli.main", "validate", str(path)], capture_output=True,
                          text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "2 problems" in proc.stderr and "'batch_size'" in proc.stderr and "format: instruction" in proc.stderr


def test_model_name_missing_path_is_a_problem_and_hub_names_get_a_note(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.jsonl").write_text('{"text": "a"}\n')
    config = "model: {name: %s}\ndata: {format: text, train: train.jsonl}\n"
    missing = validate_config(_write(tmp_path, config % "./models/mine"))
    assert [e.split(":")[0] for e in missing.errors] == ["model.name"] and "does not exist" in missing.errors[0]
    typo = validate_config(_write(tmp_path, config % "all-minilm-l6-v2"))  # the upstream name, not lmforge's
    assert not typo.errors and typo.notes == [
        "model.name 'all-minilm-l6-v2' is not a built-in name or a local path: read from the hub when training "
        "(not checked here); did you mean 'minilm-l6'?"]
    upstream = validate_config(_write(tmp_path, config % "HuggingFaceTB/SmolLM2-135M-Instruct"))  # its hub repo
    assert not upstream.errors and upstream.notes[0].endswith(
        "the built-in 'smollm2-135m-instruct' is this model (its Q4_1 GGUF build, dequantized once, installed "
        "offline with lmforge): use model.name: smollm2-135m-instruct")
    (tmp_path / "models" / "mine").mkdir(parents=True)
    for name in ("./models/mine", "smollm2-135m-instruct"):
        result = validate_config(_write(tmp_path, config % name))
        assert not result.errors and not result.notes, name


def test_a_format_left_out_is_told_from_the_data_or_explained_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    chats = json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}) + "\n"
    path = _write(tmp_path, "model: {name: x}\ndata: {train: chats.jsonl}\n", {"chats.jsonl": chats})
    result = validate_config(path)
    assert result.errors == [] and result.config.data.format == "chat"
    assert result.notes[0].startswith("data.format: chat, told from the data (chats.jsonl:1 has messages)")
    # columns no format has: one problem saying why (not also the schema's "required field is missing")
    notes = json.dumps({"title": "refunds", "body": "within 30 days"}) + "\n"
    path = _write(tmp_path, "data: {train: notes.jsonl}\n", {"notes.jsonl": notes})  # no model: picked once told
    errors = validate_config(path).errors
    assert len(errors) == 1, errors
    assert errors[0].startswith("data.format: not set, and notes.jsonl:1 (columns: title, body) fits no format")
    assert not any(e.startswith("data.format: required") for e in errors), errors
