"""FeedbackStore under concurrent writers, idempotent submissions, and agreement between annotators."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest

from lmforge.data.feedback import FeedbackStore, Judgement, agreement, cohen_kappa, read_jsonl, verdict


def _j(prompt, answers, choice, who=None, **kw):
    return Judgement(prompt, answers, choice, provenance={"annotator": who} if who else {}, **kw)


def test_threads_and_processes_lose_and_duplicate_nothing(tmp_path):
    store = FeedbackStore(tmp_path)
    judgements = [_j(f"q{i}", [f"a{i}", f"b{i}"], "A", who=f"t{i % 4}") for i in range(120)]
    results = []

    def write(part):
        for j in part:
            results.append(store.append(j))
            results.append(store.append(j))  # the same form again

    threads = [threading.Thread(target=write, args=(judgements[i::6],)) for i in range(6)]
    code = ("import sys, json; from lmforge.data.feedback import FeedbackStore, Judgement; s = FeedbackStore(sys.argv[1]); "
            "[s.append(Judgement(f'p{i}', ['x', 'y'], 'B', id=f'proc-{i}')) for i in range(40)]")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)]) for _ in range(2)]  # same ids twice
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(p.wait(timeout=120) == 0 for p in procs)
    assert results.count(True) == 120 and results.count(False) == 120
    rows = read_jsonl(store.judgements)
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == 160
    assert sorted(ids) == sorted([j.id for j in judgements] + [f"proc-{i}" for i in range(40)])
    assert len(read_jsonl(store.preferences)) == 160  # one pair per judgement (A or B over the other)
    for name in ("judgements.jsonl", "preferences.jsonl"):
        for line in (tmp_path / name).read_text().splitlines():
            json.loads(line)  # every line whole: no interleaved writes


def test_once_per_refuses_a_second_judgement_of_the_same_item(tmp_path):
    store = FeedbackStore(tmp_path)
    first = Judgement("q", ["a", "b"], "A", provenance={"annotator": "ann", "item": "i1"})
    again = Judgement("q", ["a", "b"], "B", provenance={"annotator": "ann", "item": "i1"})
    other = Judgement("q", ["a", "b"], "B", provenance={"annotator": "bob", "item": "i1"})
    assert store.append(first, ("annotator", "item"))
    assert not store.append(again, ("annotator", "item"))
    assert store.append(other, ("annotator", "item"))
    assert [j.choice for j in store.read()] == ["A", "B"]
    assert store.judged_prompts("ann") == {"q"} and store.judged_prompts("zoe") == set()


def test_verdict_ignores_the_order_answers_were_shown_in():
    a = verdict(Judgement("q", ["x", "y"], "A"))
    b = verdict(Judgement("q", ["y", "x"], "B"))
    assert a == b
    assert verdict(Judgement("q", ["y", "x"], "tie"))[1] == "tie"
    assert verdict(Judgement("q", ["x"], "good", mode="rate")) == (("rate", "q", "x"), "good")


def test_agreement_and_kappa_match_hand_computation():
    js = [_j("q1", ["x", "y"], "A", "ann"), _j("q1", ["y", "x"], "B", "bob"),  # both chose x
          _j("q2", ["x", "y"], "A", "ann"), _j("q2", ["x", "y"], "B", "bob"),  # disagree
          _j("q3", ["x", "y"], "tie", "ann"), _j("q3", ["x", "y"], "tie", "bob"),
          _j("q4", ["x", "y"], "A", "ann"), _j("q4", ["x", "y"], "A"),  # unnamed: left out
          _j("q5", ["x", "y"], "B", "cy")]
    got = agreement(js)
    assert got["annotators"] == ["ann", "bob", "cy"] and got["shared_items"] == 3
    (pair,) = got["pairs"]
    assert (pair["a"], pair["b"], pair["items"]) == ("ann", "bob", 3)
    assert pair["agree"] == pytest.approx(2 / 3)
    # labels ann: 0, 0, tie; bob: 0, 1, tie -> p_o = 2/3, p_e = (2/3)(1/3) + 0 + (1/3)(1/3) = 1/3
    assert pair["kappa"] == pytest.approx((2 / 3 - 1 / 3) / (1 - 1 / 3))
    assert got["agree"] == pytest.approx(2 / 3)


def test_kappa_undefined_when_everyone_always_says_the_same():
    assert cohen_kappa([("tie", "tie"), ("tie", "tie")]) is None
    assert agreement([])["agree"] is None


def test_judgements_get_distinct_ids():
    assert len({Judgement("q", ["a", "b"], "A").id for _ in range(50)}) == 50
