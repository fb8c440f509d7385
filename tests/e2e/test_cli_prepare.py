"""`lmforge data prepare` and the prepare stage inside `lmforge train`, through the real CLI."""

from __future__ import annotations

import hashlib
import json
import re

from tests.e2e.conftest import run_cli, write_config


def _reviews(tmp_path):
    path = tmp_path / "reviews.jsonl"
    rows = []
    for i in range(40):
        good = i % 2 == 0
        text = f"review number {i}: {'great food, i love it' if good else 'bad taste, i hate it'}<br />mail me at user{i}@example.com"
        rows.append({"review": text, "score": "great" if good else "other"})
    rows.append(dict(rows[0]))  # an exact duplicate
    rows.append({"review": "Great  taste, would buy again", "score": "Great "})  # label typo (case, space)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_data_prepare_cleans_redacts_and_is_deterministic(tmp_path, tiny_bert_dir):
    data = _reviews(tmp_path)
    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    cfg = write_config(tmp_path, f"""
model: {{name: {tiny_bert_dir}}}
data:
  format: classification
  train: {data}
  columns: {{text: review, label: score}}
  prepare: {{}}
""")
    outs = []
    for name in ("a", "b"):
        proc = run_cli("data", "prepare", str(cfg), "--out", str(tmp_path / name))
        assert proc.returncode == 0, proc.stderr[-3000:]
        outs.append({f: (tmp_path / name / f).read_bytes() for f in ("train.jsonl", "validation.jsonl", "test.jsonl")})
    assert outs[0] == outs[1]  # same input + config -> byte-identical output
    assert hashlib.sha256(data.read_bytes()).hexdigest() == digest  # the user's file is untouched
    text = b"".join(outs[0].values()).decode()
    assert "@example.com" not in text and "<EMAIL>" in text
    assert "<br />" not in text
    labels = {json.loads(line)["label"] for line in text.splitlines()}
    assert labels == {"great", "other"}
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["inputs"][0]["sha256"] == digest


def test_train_runs_prepare_first(tmp_path, tiny_bert_dir):
    data = _reviews(tmp_path)
    cfg = write_config(tmp_path, f"""
run: {{output_dir: {tmp_path / 'run'}}}
model: {{name: {tiny_bert_dir}}}
data: {{format: classification, train: {data}, columns: {{text: review, label: score}}, max_length: 24,
        prepare: {{pii: {{terms: {{CLIENT: [Zorblax Ltd]}}}}}}}}
method: {{name: freeze}}
train: {{max_steps: 2, batch_size: 4}}
runtime: {{precision: fp32}}
""")
    proc = run_cli("train", str(cfg))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "run" / "data" / "manifest.json").exists()
    assert "prepare:" in proc.stdout
    # the model card is shared: an inline list of personal terms is counted there, never written
    cards = [p.read_text() for p in (tmp_path / "run" / "export").rglob("README.md")]
    assert cards and all("Zorblax" not in c for c in cards) and "<1 terms, not written here>" in cards[0]

    # later commands read the run's prepared data as it is, and never rewrite it
    prepared = {p.name: p.read_bytes() for p in (tmp_path / "run" / "data").iterdir() if p.is_file()}
    test_part = (tmp_path / "run" / "data" / "test.jsonl").read_text().count("\n")
    with data.open("a") as f:  # the input grows after the run: the run's record stays what it trained on
        f.write(json.dumps({"review": "a new review, mail new@example.com", "score": "great"}) + "\n")
    plain = run_cli("eval", str(tmp_path / "run"))
    assert plain.returncode == 0, plain.stderr[-3000:]
    assert f"prepare: the run's prepared data ({tmp_path / 'run' / 'data'})" in plain.stdout
    assert re.search(rf"^eval_examples\s+{test_part}\b", plain.stdout, re.M), plain.stdout
    # new held-out data gets the same cleaning in a temporary folder; the training source itself may be given
    again = run_cli("eval", str(tmp_path / "run"), "--data", str(data), "--out", str(tmp_path / "on-train"))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "prepared for this command only, not kept" in again.stdout
    base = run_cli("eval", str(cfg), "--out", str(tmp_path / "base"))  # the config's base model, same data
    assert base.returncode == 0, base.stderr[-3000:]
    assert "prepared for this command only, not kept" in base.stdout
    assert {p.name: p.read_bytes() for p in (tmp_path / "run" / "data").iterdir() if p.is_file()} == prepared


def test_data_prepare_paraphrases_train_examples_with_the_named_model(tmp_path, tiny_llama_dir, qa_file):
    cfg = write_config(tmp_path, f"""
model: {{name: {tiny_llama_dir}}}
data:
  format: instruction
  train: {qa_file}
  columns: {{instruction: question, output: answer}}
  prepare: {{dedup: {{exact: false, near: false}}, augment: {{paraphrase: {{model: {tiny_llama_dir}, max_new_tokens: 8, min_words: 1, max_length_ratio: 50}}}}}}
""")
    proc = run_cli("data", "prepare", str(cfg), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "to paraphrase" in proc.stdout
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    text = json.dumps(manifest)
    assert "paraphrase" in text  # the rule and its counts are recorded in the audit trail


def test_data_prepare_collects_several_sources_with_their_own_columns(tmp_path, tiny_bert_dir):
    shop = tmp_path / "shop.csv"
    shop.write_text("review,stars\n" + "".join(f"shop review {i} was fine,{'great' if i % 2 else 'other'}\n" for i in range(12)))
    chats = tmp_path / "support.jsonl"
    chats.write_text("".join(json.dumps({"body": f"support ticket {i} solved", "tag": "great"}) + "\n" for i in range(8)))
    cfg = write_config(tmp_path, f"""
model: {{name: {tiny_bert_dir}}}
data:
  format: classification
  train:
    - {{path: {shop}, columns: {{text: review, label: stars}}}}
    - {{path: {chats}, columns: {{text: body, label: tag}}}}
  split: {{validation: 0.2, test: 0.1}}
  prepare: {{}}
""")
    proc = run_cli("data", "prepare", str(cfg), "--out", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for f in ("train", "validation", "test") for line in (tmp_path / "out" / f"{f}.jsonl").read_text().splitlines()]
    assert len(rows) == 20
    assert {r["_source"] for r in rows} == {"shop.csv", "support.jsonl"}
    assert {r["text"].split()[0] for r in rows if r["_source"] == "support.jsonl"} == {"support"}
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert [p["path"].rsplit("/", 1)[-1] for p in manifest["inputs"]] == ["shop.csv", "support.jsonl"]


def test_data_prepare_bad_input_exits_2_names_the_line_and_changes_nothing(tmp_path, tiny_bert_dir):
    """Unreadable bytes, a wrong column and a mixed-format file: exit 2, file:line named, nothing written."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.jsonl").write_text("an earlier prepare output\n")
    (out / ".lmforge").write_text('{"kind": "data"}\n')  # written by lmforge: a rerun may replace it, a failure may not
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad_bytes = tmp_path / "bytes.csv"
    bad_bytes.write_bytes(b"review,score\nfine,great\ncaf\xe9,other\n")
    wrong_column = tmp_path / "column.jsonl"
    wrong_column.write_text(json.dumps({"review": "good", "score": "great"}) + "\n" + json.dumps({"body": "bad", "score": "other"}) + "\n")
    mixed = tmp_path / "mixed.jsonl"
    mixed.write_text(json.dumps({"review": "good", "score": "great"}) + "\n"
                     + json.dumps({"messages": [{"role": "user", "content": "hi"}]}) + "\n")
    cases = [(bad_bytes, "bytes.csv:3"), (wrong_column, "column.jsonl:2"), (mixed, "mixed.jsonl:2")]
    for path, where in cases:
        cfg = write_config(tmp_path, f"""
model: {{name: {tiny_bert_dir}}}
data: {{format: classification, train: {path}, columns: {{text: review, label: score}}, prepare: {{}}}}
""")
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        proc = run_cli("data", "prepare", str(cfg), "--out", str(out))
        assert proc.returncode == 2, proc.stderr[-2000:]
        assert where in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
        assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".prepare")]  # work folder removed
