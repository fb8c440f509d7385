"""Near copies of training examples in held-out data (a plain run's leakage check)."""

from __future__ import annotations

from lmforge.data.leakage import describe_near_copies, near_copies


def _chat(question: str, answer: str, where: str, system: str | None = None) -> dict:
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return {"messages": messages, "_where": where}


def _train(n: int = 40, system: str | None = None) -> list[dict]:
    return [_chat(f"How do I close savings account {i} that I opened in {1990 + i}?",
                  f"Visit branch {i} with your ID; the balance is paid out within {i % 5 + 1} days.", f"t.jsonl:{i + 1}",
                  system) for i in range(n)]


def test_a_reworded_copy_is_found_and_an_unrelated_question_is_not():
    train = _train()
    copy = _chat("How do I close savings account 7 that I opened in 1997 ?",  # one space: still a near copy
                 "Visit branch 7 with your ID; the balance is paid out within 3 days.", "test.jsonl:1")
    other = _chat("What does an index fund hold?", "A basket of shares that follows a market index.", "test.jsonl:2")
    parts, indexed = near_copies(train, {"validation": [], "test": [copy, other]}, "chat")
    assert indexed == 40 and len(parts) == 1  # an empty part is not reported
    (test,) = parts
    assert (test.part, test.checked, test.found, test.example) == ("test", 2, 1, ("test.jsonl:1", "t.jsonl:8"))
    (line,) = describe_near_copies(train, {"test": [copy, other]}, "chat")
    assert line.startswith("near copies of training examples in held-out data: test 1 of 2, e.g. test.jsonl:1 ~ "
                           "t.jsonl:8") and "data.prepare" in line
    assert describe_near_copies(train, {"test": [other]}, "chat") == []


def test_a_shared_system_prompt_does_not_make_chats_alike():
    system = "You are the bank's assistant. Answer politely, cite the branch rules, never give tax advice. " * 20
    train = _train(system=system)
    other = _chat("What does an index fund hold?", "A basket of shares.", "test.jsonl:1", system)
    assert describe_near_copies(train, {"test": [other]}, "chat") == []


def test_a_large_training_set_is_checked_on_an_evenly_spaced_sample_and_says_so():
    train = _train(40)
    copy = dict(train[20], _where="test.jsonl:1")
    parts, indexed = near_copies(train, {"test": [copy]}, "chat", train_chars=1000)
    assert indexed < 40 and 40 // indexed >= 2
    line = describe_near_copies(train, {"test": [copy]}, "chat", train_chars=1000)
    assert not line or f"(checked against {indexed} of 40 training examples)" in line[0]
    # the first example is always in the sample, so its copy is always found
    first = dict(train[0], _where="test.jsonl:2")
    (line,) = describe_near_copies(train, {"test": [first]}, "chat", train_chars=1000)
    assert f"test 1 of 1 (checked against {indexed} of 40 training examples)" in line
