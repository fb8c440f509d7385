"""Rows -> canonical records per format: column mapping, chat style detection, validation errors."""

from __future__ import annotations

import pytest

from lmforge.config.schema import DataConfig
from lmforge.data.records import to_records
from lmforge.errors import UserError


def cfg(format, **kw):
    return DataConfig(format=format, train="unused.jsonl", **kw)


def one(row, format, **kw):
    return to_records([(row, "f.jsonl:7")], cfg(format, **kw))[0]


def test_text_and_column_mapping():
    assert one({"body": "hello"}, "text", columns={"text": "body"}) == {"text": "hello", "_where": "f.jsonl:7", "_format": "text"}


def test_missing_column_names_line_field_did_you_mean_and_hint():
    with pytest.raises(UserError) as err:
        one({"instruction": "q", "outptu": "a"}, "instruction")
    e = err.value
    assert e.where == "f.jsonl:7"
    assert "missing column 'output'" in str(e) and "did you mean 'outptu'" in str(e)
    assert "data.columns.output" in e.hint


def test_instruction_input_optional_and_system_from_config():
    rec = one({"instruction": "q", "output": "a"}, "instruction", system_prompt="be brief")
    assert rec["input"] == "" and rec["system"] == "be brief"
    rec = one({"instruction": "q", "input": "ctx", "output": "a", "sys": "own"}, "instruction", columns={"system": "sys"})
    assert rec["input"] == "ctx" and rec["system"] == "own"
    assert one({"instruction": "q", "output": "a"}, "instruction")["system"] is None


def test_trl_prompt_completion_rows_are_instruction_records():
    rec = one({"prompt": "What is clause 4?", "completion": "Liability."}, "instruction")
    assert (rec["instruction"], rec["output"], rec["input"]) == ("What is clause 4?", "Liability.", "")
    # an instruction column wins; a mapping of either field turns the detection off
    assert one({"instruction": "i", "output": "o", "prompt": "p", "completion": "c"}, "instruction")["instruction"] == "i"
    with pytest.raises(UserError, match="missing column 'instruction'"):
        one({"prompt": "p", "completion": "c"}, "instruction", columns={"output": "answer"})
    with pytest.raises(UserError, match="column 'completion' is empty"):
        one({"prompt": "p", "completion": " "}, "instruction")
    with pytest.raises(UserError, match="missing column 'instruction'"):  # prompt alone is not the format
        one({"prompt": "p", "answer": "a"}, "instruction")


def test_explicitly_mapped_optional_column_must_exist():
    with pytest.raises(UserError, match="missing column 'ctx'"):
        one({"instruction": "q", "output": "a"}, "instruction", columns={"input": "ctx"})


def test_openai_chat():
    row = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    assert one(row, "chat")["messages"] == row["messages"]


def test_openai_developer_role_and_content_parts():
    row = {"messages": [{"role": "developer", "content": "Be brief."},
                        {"role": "user", "content": [{"type": "text", "text": "where is "}, {"type": "text", "text": "it?"}]},
                        {"role": "assistant", "content": "Here."}]}
    assert one(row, "chat")["messages"] == [{"role": "system", "content": "Be brief."},
                                            {"role": "user", "content": "where is it?"},
                                            {"role": "assistant", "content": "Here."}]
    tool = {"messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "{}"},
                         {"role": "assistant", "content": "y"}]}
    with pytest.raises(UserError, match="message 2 has unknown role 'tool'") as err:
        one(tool, "chat")
    assert "tool and function messages are not trained" in err.value.hint


def test_sharegpt_chat_is_detected_and_roles_mapped():
    row = {
        "conversations": [
            {"from": "system", "value": "s"},
            {"from": "human", "value": "hi"},
            {"from": "gpt", "value": "hello"},
        ]
    }
    assert one(row, "chat")["messages"] == [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
    ]


def test_chat_system_prompt_is_added_when_missing():
    row = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    assert one(row, "chat", system_prompt="sys")["messages"][0] == {"role": "system", "content": "sys"}


def test_chat_unknown_role_and_last_turn():
    bad = {"messages": [{"role": "usr", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
    with pytest.raises(UserError, match="unknown role 'usr'; did you mean 'user'") as err:
        one(bad, "chat")
    assert err.value.where == "f.jsonl:7"
    with pytest.raises(UserError, match="last message must be from the assistant"):
        one({"messages": [{"role": "user", "content": "hi"}]}, "chat")


def test_classification_label_stringified_stripped_and_checked():
    assert one({"text": "t", "label": 1}, "classification")["label"] == "1"
    rec = one({"text": "t", "label": " pos ", "text_pair": "p"}, "classification")
    assert rec == {"text": "t", "text_pair": "p", "label": "pos", "_where": "f.jsonl:7", "_format": "classification"}
    with pytest.raises(UserError) as err:
        one({"text": "t", "label": "postive"}, "classification", labels=["positive", "negative"])
    assert "label 'postive'" in str(err.value) and "did you mean 'positive'" in str(err.value)
    assert err.value.where == "f.jsonl:7"


def test_preference_fields_must_be_non_empty_strings():
    rec = one({"prompt": "p", "chosen": "c", "rejected": "r"}, "preference")
    assert (rec["prompt"], rec["chosen"], rec["rejected"]) == ("p", "c", "r")
    with pytest.raises(UserError, match="'rejected' is empty"):
        one({"prompt": "p", "chosen": "c", "rejected": "  "}, "preference")
    with pytest.raises(UserError, match="message 1 must be an object, got str"):
        one({"prompt": "p", "chosen": ["c"], "rejected": "r"}, "preference")


def test_conversational_preference_rows_of_trl_and_ultrafeedback():
    user = {"role": "user", "content": "Q?"}

    def answer(text):
        return {"role": "assistant", "content": text}

    want = ("Q?", "good", "bad")
    trl = {"prompt": [user], "chosen": [answer("good")], "rejected": [answer("bad")]}
    ultrafeedback = {"prompt": "Q?", "chosen": [user, answer("good")], "rejected": [user, answer("bad")]}
    mixed = {"prompt": "Q?", "chosen": [answer("good")], "rejected": "bad"}
    for row in (trl, ultrafeedback, mixed):
        rec = one(row, "preference")
        assert (rec["prompt"], rec["chosen"], rec["rejected"]) == want
    history = {"prompt": [user, answer("A"), user], "chosen": [answer("good")], "rejected": [answer("bad")]}
    with pytest.raises(UserError, match="holds 3 messages .* a preference prompt is one user message"):
        one(history, "preference")
    other = {"prompt": "Q?", "chosen": [{"role": "user", "content": "other?"}, answer("good")], "rejected": "bad"}
    with pytest.raises(UserError, match="column 'chosen' repeats a prompt that differs"):
        one(other, "preference")
    two = {"prompt": "Q?", "chosen": [answer("a"), answer("b")], "rejected": "bad"}
    with pytest.raises(UserError, match="must end in one assistant answer"):
        one(two, "preference")
