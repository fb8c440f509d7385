"""Personal-data detection: checksums, redaction modes, and floors on the labelled set."""

from __future__ import annotations

from pathlib import Path

from lmforge.config.prepare import PII_TYPES
from lmforge.data.prepare.pii import detect, iban_ok, luhn_ok, redact
from lmforge.data.prepare.pii_score import read_labelled, score_pii

LABELLED = Path(__file__).with_name("pii_labelled.jsonl")


def test_checksums():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("DE89 3704 0044 0532 0130 00") and not iban_ok("DE89370400440532013001")


def test_checksum_failures_are_not_flagged():
    assert detect("order 4111 1111 1111 1112 shipped", PII_TYPES) == []
    assert detect("IBAN DE89370400440532013001", PII_TYPES) == []


def test_placeholder_and_pseudonym_redaction():
    text = "Mail a@b.com or a@b.com, call +1 415-555-0132"
    spans = detect(text, PII_TYPES)
    assert redact(text, spans) == "Mail <EMAIL> or <EMAIL>, call <PHONE>"
    pseudo = redact(text, spans, "pseudonym", salt="1")
    names = [w.strip(",") for w in pseudo.split() if "@" in w]
    assert len(names) == 2 and names[0] == names[1] and "a@b.com" not in pseudo
    assert redact(text, spans, "pseudonym", salt="2") != pseudo


def test_types_can_be_restricted():
    spans = detect("a@b.com from 10.0.0.1", ["IP_ADDRESS"])
    assert [s.type for s in spans] == ["IP_ADDRESS"]


def test_labelled_set_has_positives_and_negatives_of_every_type():
    lines = read_labelled(LABELLED)
    assert len(lines) >= 140
    assert sum(1 for line in lines if not line["pii"]) >= 50
    kinds = {p["type"] for line in lines for p in line["pii"]}
    assert kinds == set(PII_TYPES)
    for line in lines:
        for p in line["pii"]:
            assert p["value"] in line["text"]


def test_precision_and_recall_floors_per_type():
    scores = score_pii(read_labelled(LABELLED))
    for kind in PII_TYPES:
        assert scores[kind]["precision"] >= 0.95, (kind, scores[kind])
        assert scores[kind]["recall"] >= 0.9, (kind, scores[kind])


def test_heldout_set_floors():
    """A set written after the detector, scored as published in docs/data-prepare.md."""
    scores = score_pii(read_labelled(LABELLED.with_name("pii_heldout.jsonl")))
    assert scores["ALL"]["precision"] >= 0.85 and scores["ALL"]["recall"] >= 0.9, scores["ALL"]


def test_score_script_prints_the_published_table(capsys):
    from lmforge.data.prepare.pii_score import main

    assert main([str(LABELLED)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| type | labelled | found | precision | recall |") and "| ALL | 91 |" in out


def test_phone_set_written_before_the_change():
    """pii_phones.jsonl (E.164 and national formats of US/CA, UK, IE, AU, NZ, IN, ZA; order numbers,
    dates, amounts and IDs as negatives) was committed before the detector changed. Before: PHONE
    precision 0.941, recall 0.831 (and one E.164 number taken for a card); published in
    docs/data-prepare.md with the figures after."""
    lines = read_labelled(LABELLED.with_name("pii_phones.jsonl"))
    assert len(lines) >= 110 and sum(1 for line in lines if not line["pii"]) >= 40
    scores = score_pii(lines)
    assert scores["PHONE"]["precision"] >= 0.98 and scores["PHONE"]["recall"] >= 0.97, scores["PHONE"]
    assert scores["CARD"]["fp"] == 0


def test_sms_style_phone_numbers_are_redacted_and_reference_numbers_are_not():
    cases = {
        "Statement for 07815296484 is ready": "Statement for <PHONE> is ready",
        "Call 09061701461 to claim": "Call <PHONE> to claim",
        "ring +447700900456 now": "ring <PHONE> now",
        "my cell 6502530000": "my cell <PHONE>",
        "order 6502530000 shipped": "order 6502530000 shipped",  # ten bare digits without a phone word
        "ISBN-10: 0738551856": "ISBN-10: 0738551856",
        "Your order no. 40512-7781 is on its way": "Your order no. 40512-7781 is on its way",
        "won 21-17 18-21 21-19": "won 21-17 18-21 21-19",
        "call +8613812345678": "call <PHONE>",
    }
    for text, expected in cases.items():
        assert redact(text, detect(text, PII_TYPES)) == expected, text
