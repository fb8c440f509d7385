"""run_prepare end to end: outputs, audit trail, leaks across splits, determinism, bad input."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest

from lmforge.config.schema import SplitConfig
from lmforge.config.prepare import PrepareConfig
from lmforge.data.prepare import run_prepare
from lmforge.errors import UserError

WORDS = "coffee tea arrived fresh stale strong weak bag sealed torn price cheap expensive taste bitter sweet smooth box".split()


def _reviews(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        text = " ".join(rng.choice(WORDS) for _ in range(14))
        out.append({"text": text, "text_pair": None, "label": "great" if i % 3 else "other", "_where": f"reviews.jsonl:{i + 1}"})
    return out


@pytest.fixture
def source(tmp_path) -> Path:
    path = tmp_path / "reviews.jsonl"
    path.write_text("stand-in for the user's input file\n")
    return path


def _prepare(records, out, source, **kw):
    cfg = kw.pop("cfg", PrepareConfig())
    return run_prepare(records, kw.pop("fmt", "classification"), cfg, out, inputs=[source], seed=7, **kw)


def test_outputs_and_manifest(tmp_path, source):
    records = _reviews(60)
    records[5]["text"] += " <br />write to jo@mail.com"
    records.append(dict(records[2], _where="reviews.jsonl:99"))  # exact duplicate
    result = _prepare(records, tmp_path / "out", source)
    manifest = json.loads(result.manifest_path.read_text())
    assert sum(o["examples"] for o in manifest["outputs"]) == 60
    for out in manifest["outputs"]:
        data = (tmp_path / "out" / out["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == out["sha256"]
        assert len(data.splitlines()) == out["examples"]
    assert manifest["inputs"][0]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()
    assert manifest["rules"]["dedup_exact"]["removed"] == 1
    assert manifest["rules"]["pii_redact"]["changed"] == 1
    assert manifest["config"]["dedup"]["threshold"] == 0.8 and "numpy" in manifest["versions"]
    every = result.train + result.validation + result.test
    assert all(r["_source"] == "reviews.jsonl" for r in every)
    assert "jo@mail.com" not in result.manifest_path.read_text() + result.report_path.read_text()
    assert any("<EMAIL>" in r["text"] and "<br" not in r["text"] for r in every)
    assert "## Label balance" in result.report_path.read_text()
    page = (tmp_path / "out" / "report.html").read_text()
    assert "Label balance" in page and "class='bar'" in page and "<script" not in page


def test_same_input_gives_identical_bytes(tmp_path, source):
    cfg = PrepareConfig(augment={"oversample": True, "eda": True})
    paths = []
    for name in ("a", "b"):
        result = _prepare(_reviews(80), tmp_path / name, source, cfg=cfg)
        paths.append(result.manifest_path.parent)
    for name in ("train.jsonl", "validation.jsonl", "test.jsonl", "manifest.json", "report.md", "report.html"):
        assert (paths[0] / name).read_bytes() == (paths[1] / name).read_bytes(), name
    train = [json.loads(line) for line in (paths[0] / "train.jsonl").read_text().splitlines()]
    assert any(r.get("_augmented") == "oversample" for r in train)
    labels = [r["label"] for r in train]
    assert labels.count("great") == labels.count("other")


def test_eval_example_near_train_is_a_leak_and_train_copy_dropped(tmp_path, source):
    train = _reviews(40)
    leaked = dict(train[10], text=train[10]["text"] + " indeed", _where="eval.jsonl:1")
    exact = dict(train[20], _where="eval.jsonl:2")
    result = _prepare(train, tmp_path / "out", source, validation_records=[leaked, exact], split=SplitConfig(test=0.0))
    rules = json.loads(result.manifest_path.read_text())["rules"]
    assert rules["leak_near"]["removed"] == 1 and rules["leak_exact"]["removed"] == 1
    assert "eval.jsonl:1" in rules["leak_near"]["examples"][0]["detail"]
    kept = {r["_where"] for r in result.train}
    assert len(kept) == 38 and not result.test
    assert "reviews.jsonl:11" not in kept and "reviews.jsonl:21" not in kept
    assert [r["_where"] for r in result.validation] == ["eval.jsonl:1", "eval.jsonl:2"]


def test_near_duplicates_removed_within_train(tmp_path, source):
    records = _reviews(30)
    records.append(dict(records[4], text=records[4]["text"].replace(" ", "  ") + "!", _where="reviews.jsonl:77"))
    records.append(dict(records[6], text=records[6]["text"] + " yes", _where="reviews.jsonl:78"))
    result = _prepare(records, tmp_path / "out", source)
    rules = json.loads(result.manifest_path.read_text())["rules"]
    assert rules["dedup_near"]["removed"] == 2
    assert {e["where"] for e in rules["dedup_near"]["examples"]} == {"reviews.jsonl:77", "reviews.jsonl:78"}


def test_text_and_chat_formats(tmp_path, source):
    chat = [
        {"messages": [{"role": "user", "content": f"Question {i}?  cafÃ©"}, {"role": "assistant", "content": " ".join(random.Random(i).sample(WORDS, 8))}], "_where": f"c.jsonl:{i}"}
        for i in range(1, 21)
    ]
    result = _prepare(chat, tmp_path / "chat", source, fmt="chat")
    every = result.train + result.validation + result.test
    assert len(every) == 20 and all(r["messages"][0]["content"].endswith("? café") for r in every)
    texts = [{"text": f"Doc {i} about tea number {i}", "_where": f"t.txt:{i}"} for i in range(10)] + [{"text": "   ", "_where": "t.txt:11"}]
    result = _prepare(texts, tmp_path / "text", source, fmt="text")
    assert len(result.train + result.validation + result.test) == 10


def test_length_in_tokens_with_a_tokenizer(tmp_path, source, tiny_tok):
    records = [{"text": "hello world " * (i + 1), "_where": f"t.txt:{i}"} for i in range(12)]
    cfg = PrepareConfig(filter={"max_length": 6, "max_repeated_ngrams": 1.0, "max_repeated_lines": 1.0}, dedup={"near": False})
    result = _prepare(records, tmp_path / "out", source, fmt="text", cfg=cfg, tokenizer=tiny_tok)
    manifest = json.loads(result.manifest_path.read_text())
    assert manifest["length_unit"] == "tokens"
    kept = result.train + result.validation + result.test
    assert kept and all(len(tiny_tok.encode(r["text"], add_special_tokens=False)) <= 6 for r in kept)


def test_bad_input_names_the_record_and_writes_nothing(tmp_path, source):
    records = _reviews(5) + [{"review": "no text field", "label": "great", "_where": "reviews.jsonl:6"}]
    with pytest.raises(UserError, match=r"reviews.jsonl:6.*'text'"):
        _prepare(records, tmp_path / "out", source)
    assert not (tmp_path / "out").exists()


def test_label_fail_policy_names_the_record(tmp_path, source):
    records = _reviews(30) + [{"text": "odd", "text_pair": None, "label": "banana", "_where": "reviews.jsonl:31"}]
    cfg = PrepareConfig(labels={"policy": "fail", "known": ["great", "other"]})
    with pytest.raises(UserError, match="reviews.jsonl:31"):
        _prepare(records, tmp_path / "out", source, cfg=cfg)


@pytest.mark.parametrize("action", ["drop", "report", "pseudonym"])
def test_pii_actions(tmp_path, source, action):
    records = [{"text": f"Note {i}: call +1 415-555-01{i:02d} about order {i}" if i < 3 else f"Plain note number {i} about tea", "_where": f"n.txt:{i}"} for i in range(10)]
    cfg = PrepareConfig(pii={"action": action}, dedup={"near": False})
    result = _prepare(records, tmp_path / action, source, fmt="text", cfg=cfg)
    every = result.train + result.validation + result.test
    rules = json.loads(result.manifest_path.read_text())["rules"]
    phones = sum("415-555" in r["text"] for r in every)
    if action == "drop":
        assert len(every) == 7 and rules["pii_drop"]["removed"] == 3 and phones == 0
    elif action == "report":
        assert len(every) == 10 and rules["pii_found"]["found"] == 3 and phones == 3
        assert "415-555" not in result.manifest_path.read_text()
    else:
        assert len(every) == 10 and phones == 0 and sum("<PHONE_" in r["text"] for r in every) == 3


def test_empty_input_writes_empty_splits(tmp_path, source):
    result = _prepare([], tmp_path / "out", source, fmt="text")
    assert (result.train, result.validation, result.test) == ([], [], [])
    assert (tmp_path / "out" / "train.jsonl").read_text() == ""


def test_shared_system_prompt_does_not_make_duplicates(tmp_path, source):
    system = (
        "You are a careful, friendly assistant for a small tea shop in Leeds. Answer questions about loose-leaf "
        "teas, brewing temperatures, steeping times, caffeine content and storage. Keep answers short, polite and "
        "accurate; if you do not know, say so and suggest asking the staff in the shop during opening hours."
    )
    chat = [
        {"messages": [{"role": "system", "content": system}, {"role": "user", "content": f"Is tea {w} good?"}, {"role": "assistant", "content": f"Yes, {w} tea is fine."}], "_where": f"c.jsonl:{i}"}
        for i, w in enumerate(WORDS)
    ]
    result = _prepare(chat, tmp_path / "out", source, fmt="chat")
    assert len(result.train + result.validation + result.test) == len(WORDS)
