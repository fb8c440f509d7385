"""The user's own lists of terms to redact (data.prepare.pii.terms): names are not detected by any rule, so a
patient roster or client list is how a user removes them. Matching, the prepare run, the audit trail (which
never holds a listed term), validate's check of the files, and bad lists."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from lmforge.config.prepare import PiiConfig, PrepareConfig
from lmforge.data.prepare import run_prepare
from lmforge.data.prepare.pii import TermList, detect, load_terms, redact
from lmforge.errors import UserError


def _redacted(text: str, terms: TermList, types=("EMAIL",)) -> str:
    return redact(text, detect(text, types, terms))


def test_terms_are_found_as_whole_words_longest_first_in_any_case():
    terms = TermList({"NAME": ["John Smith", "Smith", "O'Brien", "Ann"], "CLIENT": ["Acme Corp"]})
    text = ("Patient john  smith (john.smith@mail.com) saw Dr. Smith, then O Brien; Acme-Corp paid. "
            "Annual review, Smithson and Ann.")
    assert _redacted(text, terms) == ("Patient <NAME> (<EMAIL>) saw Dr. <NAME>, then <NAME>; <CLIENT> paid. "
                                      "Annual review, Smithson and <NAME>.")
    # one span per occurrence, the longest term wins, and a term never spans a line break
    spans = list(terms.spans("JOHN SMITH\nJohn\nSmith"))
    assert [(s.type, s.value) for s in spans] == [("NAME", "JOHN SMITH"), ("NAME", "Smith")]
    # the address is the earlier, more specific detector: a listed name inside it does not split it
    assert _redacted("mail smith@acme.org", terms) == "mail <EMAIL>"


def test_match_case_keeps_common_words():
    terms = {"NAME": ["May", "Bill Turner"]}
    assert _redacted("You may call May.", TermList(terms)) == "You <NAME> call <NAME>."
    assert _redacted("You may call May; bill turner", TermList(terms, match_case=True)) == "You may call <NAME>; bill turner"


def test_a_long_list_costs_one_lookup_per_word():
    roster = [f"Given{i} Family{i}" for i in range(100_000)]
    terms = TermList({"NAME": roster})
    assert terms.size == 100_000
    assert _redacted("seen by given99999 family99999 and Given5 Family6", terms) == "seen by <NAME> and Given5 Family6"


def _notes(n: int) -> list[dict]:
    names = ["Aisha Khan", "Wei Chen", "Tom Baker"]
    return [{"text": f"Note {i}: {names[i % 3]} reports symptom number {i} of {'fever cough rash ache'.split()[i % 4]}",
             "label": "urgent" if i % 2 else "routine", "_where": f"notes.csv:{i + 2}"} for i in range(n)]


@pytest.mark.parametrize("action", ["placeholder", "pseudonym", "drop", "report"])
def test_prepare_redacts_listed_terms_and_the_audit_trail_never_holds_them(tmp_path, action):
    roster = tmp_path / "patients.txt"
    roster.write_text("# our patients\nAisha Khan\n\nWei Chen\n")
    source = tmp_path / "notes.csv"
    source.write_text("stand-in\n")
    cfg = PrepareConfig.model_validate({"pii": {"action": action, "terms": {"NAME": str(roster), "CLIENT": ["Tom Baker"]}},
                                        "dedup": {"near": False}})
    result = run_prepare(_notes(30), "classification", cfg, tmp_path / "out", inputs=[source], seed=3)
    written = "".join((tmp_path / "out" / name).read_text() for name in
                      ("train.jsonl", "validation.jsonl", "test.jsonl", "manifest.json", "report.md", "report.html"))
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    kept = sum(result.counts.values())
    if action == "report":
        assert kept == 30 and manifest["rules"]["pii_found"]["found"] == 30
        assert "Aisha Khan" in (tmp_path / "out" / "train.jsonl").read_text() + (tmp_path / "out" / "test.jsonl").read_text()
    else:
        for name in ("Aisha", "Khan", "Wei Chen", "Tom Baker"):
            assert name not in written
    if action == "drop":
        assert kept == 0 and manifest["rules"]["pii_drop"]["removed"] == 30
    if action == "placeholder":
        assert kept == 30 and "<NAME>" in written and "<CLIENT>" in written
        assert manifest["rules"]["pii_name"]["found"] == 20 and manifest["rules"]["pii_client"]["found"] == 10
    if action == "pseudonym":  # consistent: one pseudonym per person
        texts = [json.loads(line)["text"] for name in ("train", "validation", "test")
                 for line in (tmp_path / "out" / f"{name}.jsonl").read_text().splitlines()]
        assert len({t.split(": ")[1].split(" reports")[0] for t in texts}) == 3
    # the inline list is counted, never written; the file is named with its hash
    assert manifest["config"]["pii"]["terms"]["CLIENT"] == "<1 terms, not written here>"
    assert manifest["pii_terms"]["NAME"]["file"] == str(roster) and len(manifest["pii_terms"]["NAME"]["sha256"]) == 64


def test_bad_lists_are_named_before_anything_is_written(tmp_path):
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("Jos\xe9\n".encode("latin-1"))
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing yet\n\n")
    cases = [("John Smith", "data.prepare.pii.terms.NAME: no file 'John Smith'", "NAME: [John Smith]"),
             (str(bad), f"{bad}:1: not UTF-8 text", "UTF-8"),
             (str(empty), "no terms in the file", "one term per line")]
    for value, message, hint in cases:
        with pytest.raises(UserError) as err:
            run_prepare(_notes(6), "classification", PrepareConfig.model_validate({"pii": {"terms": {"NAME": value}}}),
                        tmp_path / "out", inputs=[], seed=0)
        assert message in str(err.value) and hint in str(err.value)
        assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.*"))
    for terms, field in [({"name": ["x"]}, "type name 'name'"), ({"NAME": []}, "the list is empty"),
                         ({"NAME": " "}, "give a file of terms")]:
        with pytest.raises(ValidationError, match=field):
            PiiConfig.model_validate({"terms": terms})
    assert load_terms({}) is None


def test_validate_checks_the_list_files_and_outputs_stay_apart_from_them(tmp_path, tiny_llama_dir):
    from lmforge.config import parse_config
    from lmforge.config.inputs import input_paths

    data = tmp_path / "notes.jsonl"
    data.write_text(json.dumps({"text": "Aisha Khan reports fever", "label": "urgent"}) + "\n")
    roster = tmp_path / "patients.txt"
    roster.write_text("Aisha Khan\n")
    config = {"model": {"name": str(tiny_llama_dir)},
              "data": {"format": "classification", "train": str(data), "prepare": {"pii": {"terms": {"NAME": str(roster)}}}}}
    assert roster in input_paths(parse_config(config))
    path = tmp_path / "run.yaml"
    path.write_text(json.dumps(config))
    ok = subprocess.run([sys.executable, "-m", "lmforge.cli.main", "validate", str(path)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    config["data"]["prepare"]["pii"]["terms"]["NAME"] = str(tmp_path / "missing.txt")
    path.write_text(json.dumps(config))
    bad = subprocess.run([sys.executable, "-m", "lmforge.cli.main", "validate", str(path)], capture_output=True, text=True)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert "data.prepare.pii.terms.NAME: no file" in bad.stderr and "missing.txt" in bad.stderr
