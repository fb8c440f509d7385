"""Output folders (lmforge.outputs): apart from the inputs, new / empty / marked by lmforge, names are names."""

from __future__ import annotations

import json

import pytest

from lmforge.errors import UserError
from lmforge.outputs import MARKER, check_name, claim_output_dir, claim_run_subfolder, read_marker


def _refused(*args, **kwargs) -> str:
    with pytest.raises(UserError) as info:
        claim_output_dir(*args, **kwargs)
    return str(info.value)


def test_a_new_folder_is_created_with_its_marker(tmp_path):
    out = claim_output_dir(tmp_path / "a" / "run", "run", where="run.output_dir")
    assert out.is_dir() and read_marker(out) == "run"
    assert json.loads((out / MARKER).read_text())["kind"] == "run"


def test_an_empty_folder_is_used_and_a_marked_one_reused(tmp_path):
    (tmp_path / "empty").mkdir()
    assert read_marker(claim_output_dir(tmp_path / "empty", "eval", where="--out")) == "eval"
    (tmp_path / "empty" / "results.json").write_text("{}")
    claim_output_dir(tmp_path / "empty", "eval", where="--out")  # lmforge's own: fine


def test_not_checked_only_is_not_created(tmp_path):
    assert not claim_output_dir(tmp_path / "x", "data", where="--out", create=False).exists()


def test_a_users_folder_a_file_and_another_kind_are_refused(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    assert "not empty (notes.txt) and was not written by lmforge" in _refused(tmp_path / "mine", "run", where="run.output_dir")
    (tmp_path / "file").write_text("x")
    assert "is a file" in _refused(tmp_path / "file", "data", where="--out")
    run = claim_output_dir(tmp_path / "run", "run", where="w")
    assert "holds lmforge run output, not data output" in _refused(run, "data", where="--out")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "mine" and not (tmp_path / "mine" / MARKER).exists()


@pytest.mark.parametrize("out, data, conflict", [
    ("data", "data/train.jsonl", "contains the input"),
    ("data/train.jsonl", "data/train.jsonl", "is a file"),
    ("data/out", "data", "lies inside the input folder"),
    ("data", "data", "is the input"),
    (".", "data/train.jsonl", "contains the input"),
])
def test_an_output_folder_apart_from_every_input(tmp_path, monkeypatch, out, data, conflict):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text("{}\n")
    message = _refused(out, "data", inputs=[data], where="--out")
    assert conflict in message and "--out" in message
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["train.jsonl"]


def test_inputs_that_do_not_exist_are_ignored(tmp_path):
    claim_output_dir(tmp_path / "out", "data", inputs=[tmp_path / "out" / "nope.jsonl", "asset:fiqa"], where="--out")


def test_a_legacy_run_folder_is_recognised_and_marked(tmp_path):
    run = tmp_path / "run"
    (run / "checkpoints" / "last").mkdir(parents=True)
    (run / "config.yaml").write_text("model: {name: x}\n")
    claim_output_dir(run, "run", where="run.output_dir")
    assert read_marker(run) == "run"
    (run / "export").mkdir()
    (run / "export" / "README.md").write_text("card")
    claim_run_subfolder(run, "export", "export", where=str(run))  # a sub-folder of a marked run folder
    assert read_marker(run / "export") == "export"


def test_a_config_yaml_alone_is_not_taken_for_a_run(tmp_path):
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "config.yaml").write_text("mine: 1\n")
    assert "not written by lmforge" in _refused(tmp_path / "proj", "run", where="run.output_dir")


def test_claim_run_subfolder_removes_what_a_killed_write_left(tmp_path):
    run = claim_output_dir(tmp_path / "run", "run", where="w")
    (run / ".export.abcd1234.tmp").mkdir()
    (run / ".export.old").mkdir()
    (run / ".results.json.abcd1234.tmp").write_text("another writer's temporary")
    claim_run_subfolder(run, "export", "export", where="w", create=False)
    assert sorted(p.name for p in run.iterdir()) == [".lmforge", ".results.json.abcd1234.tmp"]


@pytest.mark.parametrize("name", ["../../etc", "a/b", "/abs", "..", ".", ".hidden", "~x", "", "a\\b", "a\nb"])
def test_bad_names(name):
    with pytest.raises(ValueError, match="run name"):
        check_name(name, "run name")


@pytest.mark.parametrize("name", ["run", "finance-qa_v2.1", "2025 run"])
def test_good_names(name):
    assert check_name(name, "run name") == name
