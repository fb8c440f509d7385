"""data.format left out: the format is told from the column names of the first training record, or refused."""

from __future__ import annotations

import json

import pytest
import yaml

from lmforge.config.schema import SourceConfig
from lmforge.data.detect import source_format
from lmforge.data.formats import detect_format
from lmforge.errors import UserError
from lmforge.pipeline.configfile import load_run_config, with_detected_formats

MESSAGES = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]


@pytest.mark.parametrize("row, columns, expected", [
    ({"messages": MESSAGES}, {}, "chat"),
    ({"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}, {}, "chat"),
    ({"prompt": "q", "chosen": "a", "rejected": "b"}, {}, "preference"),
    ({"prompt": "q", "completion": "a"}, {}, "instruction"),
    ({"instruction": "q", "input": "", "output": "a"}, {}, "instruction"),
    ({"text": "great food", "label": "positive"}, {}, "classification"),  # not text: the larger set wins
    ({"text": "a document", "source": "wiki"}, {}, "text"),
    ({"review": "great food", "score": "great"}, {"text": "review", "label": "score"}, "classification"),
    ({"question": "q", "answer": "a"}, {"instruction": "question", "output": "answer"}, "instruction"),
    ({"question": "q", "answer": "a"}, {}, "instruction"),  # well-known names: mapped (below)
    ({"instruction": "q", "context": "c", "response": "a", "category": "qa"}, {}, "instruction"),  # Dolly
    # lmforge feedback's ratings.jsonl mapped for KTO: the mapping names classification's fields
    ({"prompt": "q", "completion": "a", "label": "good"}, {"text": "prompt", "text_pair": "completion", "label": "label"},
     "classification"),
])
def test_the_most_specific_format_the_row_holds(row, columns, expected):
    assert [name for name, _ in detect_format(row, columns)] == [expected]


def test_no_format_or_several_equally():
    assert detect_format({"title": "q", "body": "a"}, {}) == []
    both = detect_format({"text": "t", "label": "l", "instruction": "p", "output": "c"}, {})
    assert sorted(name for name, _ in both) == ["classification", "instruction"]


def _source(path):
    return SourceConfig(path=str(path))


def test_a_file_is_told_by_its_first_record_named_in_the_reason(tmp_path):
    f = tmp_path / "chats.jsonl"
    f.write_text(json.dumps({"messages": MESSAGES}) + "\n")
    assert source_format(_source(f), {}) == ("chat", f"{f}:1 has messages", {})
    csv = tmp_path / "reviews.csv"
    csv.write_text("review;score\ngreat food;great\n")  # a ';' export: the mapped names count
    assert source_format(_source(csv), {"text": "review", "label": "score"}) == ("classification",
                                                                                   f"{csv}:2 has review, score", {})


def test_a_spreadsheets_capitalised_headers_are_mapped(tmp_path, monkeypatch):
    """Excel and Kaggle CSVs say `Text`, `Label`: the format is told and the columns mapped (and said)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reviews.csv").write_text("Text,Label,Text_Pair\ngreat,pos,food\n")
    assert source_format(_source("reviews.csv"), {}) == (
        "classification", "reviews.csv:2 has Text, Label", {"text": "Text", "text_pair": "Text_Pair", "label": "Label"})
    (tmp_path / "reviews.yaml").write_text("data: {train: reviews.csv}\n")
    said = []
    config = load_run_config(tmp_path / "reviews.yaml", say=said.append)
    assert config.data.columns == {"text": "Text", "text_pair": "Text_Pair", "label": "Label"}
    assert "read as data.columns {text: Text, text_pair: Text_Pair, label: Label}" in said[0]
    # a user's own mapping is kept; a list of sources gets no mapping (another source may spell the fields)
    filled, _ = with_detected_formats({"data": {"train": ["reviews.csv", "reviews.csv"]}})
    assert filled["data"]["format"] == "classification" and "columns" not in filled["data"]


def test_well_known_column_names_are_mapped(tmp_path):
    """FiQA's question / answer, Dolly's instruction / context / response: read as instruction data, the columns
    mapped (the Dolly context as the input, not dropped); a user's own mapping of those fields wins."""
    qa = tmp_path / "qa.csv"
    qa.write_text("Question,Answer\nwhat is a bond?,a loan\n")
    assert source_format(_source(qa), {}) == ("instruction", f"{qa}:2 has Question, Answer",
                                              {"instruction": "Question", "output": "Answer"})
    dolly = tmp_path / "dolly.jsonl"
    dolly.write_text(json.dumps({"instruction": "q", "context": "c", "response": "a", "category": "qa"}) + "\n")
    assert source_format(_source(dolly), {})[2] == {"input": "context", "output": "response"}
    assert source_format(_source(qa), {"instruction": "Question", "output": "Answer"})[2] == {}  # mapped already


def test_plain_text_files_are_text(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("first note\n")
    (tmp_path / "notes" / "b.md").write_text("# second\n")
    assert source_format(_source(tmp_path / "notes"), {})[0] == "text"


@pytest.mark.parametrize("content, needles", [
    (json.dumps({"title": "q", "body": "a"}) + "\n", ("data.format: not set", "qa.jsonl:1", "columns: title, body",
                                                          "chat (messages or conversations)", "data.columns")),
    ("", ("data.format: not set", "holds no records")),
    (json.dumps({"text": "t", "label": "l", "instruction": "p", "output": "c"}) + "\n",
     ("fits instruction (instruction, output) and classification (text, label) equally",)),
])
def test_data_that_tells_no_format_is_refused_with_the_choices(tmp_path, content, needles):
    f = tmp_path / "qa.jsonl"
    f.write_text(content)
    with pytest.raises(UserError) as err:
        source_format(_source(f), {})
    for needle in needles:
        assert needle in str(err.value)


def test_a_saved_dataset_folder_needs_the_format(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "dataset_info.json").write_text("{}")
    (folder / "state.json").write_text("{}")
    with pytest.raises(UserError, match="datasets folder or hub dataset"):
        source_format(_source(folder), {})


def test_the_config_gets_the_format_and_says_so(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "chats.jsonl").write_text(json.dumps({"messages": MESSAGES}) + "\n")
    (tmp_path / "support.yaml").write_text(yaml.safe_dump({"model": {"name": "m"}, "data": {"train": "chats.jsonl"}}))
    said = []
    config = load_run_config(tmp_path / "support.yaml", say=said.append)
    assert config.data.format == "chat"
    assert said == ["data.format: chat, told from the data (chats.jsonl:1 has messages); set data.format to choose another"]
    # only the main process of a distributed run says it (train --nproc N starts N processes)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    load_run_config(tmp_path / "support.yaml")
    assert "told from the data" not in capsys.readouterr().out
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    load_run_config(tmp_path / "support.yaml")
    assert "told from the data" in capsys.readouterr().out
    # a format the config (or the command line) gives is kept, and nothing is said
    said.clear()
    assert load_run_config(tmp_path / "support.yaml", ["data.format=instruction"], say=said.append).data.format == "instruction"
    assert said == []


def test_each_task_is_told_from_its_own_data(tmp_path):
    chats, reviews = tmp_path / "chats.jsonl", tmp_path / "reviews.jsonl"
    chats.write_text(json.dumps({"messages": MESSAGES}) + "\n")
    reviews.write_text(json.dumps({"text": "good", "label": "pos"}) + "\n")
    raw = {"data": {"tasks": [{"name": "chat", "train": str(chats)},
                              {"name": "sentiment", "train": {"path": str(reviews)}},
                              {"name": "given", "train": str(reviews), "format": "text"}]}}
    filled, notes = with_detected_formats(raw)
    assert [t["format"] for t in filled["data"]["tasks"]] == ["chat", "classification", "text"]
    assert [n.split(",")[0] for n in notes] == ["data.tasks.0.format: chat", "data.tasks.1.format: classification"]
    assert "format" not in raw["data"]["tasks"][0]  # the caller's mapping is not changed


def test_the_objective_named_chooses_among_the_formats_it_trains_on(tmp_path):
    """lmforge feedback's ratings.jsonl ({prompt, completion, label: good|bad}) with objective kto: classification
    data with the completion as text_pair (what kto reads), not TRL prompt-completion instruction data."""
    ratings = tmp_path / "ratings.jsonl"
    ratings.write_text(json.dumps({"prompt": "q", "completion": "a", "label": "good", "judgement_id": "x"}) + "\n")
    filled, notes = with_detected_formats({"data": {"train": str(ratings)}, "objective": {"name": "kto"}})
    assert filled["data"]["format"] == "classification"
    assert filled["data"]["columns"] == {"text": "prompt", "text_pair": "completion"}
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"prompt": "q", "completion": "a"}) + "\n")
    with pytest.raises(UserError, match=r"fits no format the objective trains on \(preference\)"):
        with_detected_formats({"data": {"train": str(qa)}, "objective": {"name": "dpo"}})


def test_a_source_format_is_the_runs_format(tmp_path):
    raw = {"data": {"train": [{"path": str(tmp_path / "qa.jsonl"), "format": "instruction"}]}}
    filled, notes = with_detected_formats(raw)  # not read: the source says its layout
    assert filled["data"]["format"] == "instruction" and "the format of" in notes[0]


@pytest.mark.parametrize("raw, picked", [
    ({"data": {"format": "classification", "train": "r.csv"}}, "minilm-l6"),  # objective: the format's default
    ({"model": {"dtype": "float32"}, "data": {"format": "chat", "train": "c.jsonl"}}, "smollm2-135m-instruct"),
    ({"data": {"format": "preference", "train": "p.jsonl"}}, "smollm2-135m-instruct"),
    ({"data": {"format": "classification", "train": "r.csv"}, "objective": {"name": "kto"}}, "smollm2-135m-instruct"),
])
def test_a_config_without_a_model_gets_the_built_in_for_its_task(raw, picked):
    from lmforge.pipeline.configfile import with_default_model

    filled, notes = with_default_model(raw)
    assert filled["model"]["name"] == picked and notes[0].startswith(f"model.name: {picked}, picked for ")
    assert "set model.name to choose another" in notes[0]
    assert filled["model"].get("dtype") == raw.get("model", {}).get("dtype")  # the rest of the section is kept


@pytest.mark.parametrize("raw", [
    {"model": {"name": "my/model"}, "data": {"format": "chat", "train": "c.jsonl"}},  # named: kept
    {"data": {"format": "chats", "train": "c.jsonl"}},  # an unknown format: the schema reports it
    {"data": {"tasks": [{"name": "a", "format": "chat", "train": "c.jsonl"}]}},  # multi-task: named by the user
    {"model": "x", "data": {"format": "chat", "train": "c.jsonl"}},  # not a section: the schema reports it
])
def test_a_model_is_picked_only_where_the_config_leaves_it_out(raw):
    from lmforge.pipeline.configfile import with_default_model

    assert with_default_model(raw) == (raw, [])


def test_data_alone_is_a_whole_config(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reviews.csv").write_text("text,label\ngreat,pos\nawful,neg\n")
    (tmp_path / "reviews.yaml").write_text("data: {train: reviews.csv}\n")
    said = []
    config = load_run_config(tmp_path / "reviews.yaml", say=said.append)
    assert (config.data.format, config.model.name, config.run.name) == ("classification", "minilm-l6", "reviews")
    assert [s.split(":")[0] for s in said] == ["data.format", "model.name"]
