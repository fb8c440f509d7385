"""How samples are shortened for the terminal: a long prompt keeps its instruction and the end of its input."""

from __future__ import annotations

from lmforge.pipeline.report import elide


def test_a_long_prompt_keeps_its_start_and_end_cut_at_spaces():
    prompt = "Summarize this contract section.\n" + " ".join(f"w{i}" for i in range(300))
    short = elide(prompt)
    assert short.startswith("Summarize this contract section.\nw0 w1") and short.endswith("w298 w299")
    head, _, end = short.partition(" … ")
    assert len(head) <= 120 and len(end) <= 180 and prompt.startswith(head) and prompt.endswith(end)
    assert end.split()[0] in prompt.split()  # no word cut in half
    answer = elide(prompt, tail=0)
    assert answer.endswith(" …") and prompt.startswith(answer[:-2]) and len(answer) <= 302
    assert elide("fits") == "fits" and elide("x" * 400, tail=0) == "x" * 300 + " …"
