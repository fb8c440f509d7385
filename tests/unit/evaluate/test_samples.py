"""Sample answers that loop or are cut are flagged, and counted before -> after."""

from __future__ import annotations

from lmforge.evaluate.samples import describe_counts, flag_samples, is_repetitive, repeated_share

LOOP = ("The company is a non-profit organization that helps people. The company is a non-profit organization "
        "that helps people. The company is a non-profit organization")
PROSE = ("An index fund tracks a market index, so its fees are low. You can buy it through most brokers, "
         "and it spreads your money over many companies.")


def test_the_issue_loop_is_flagged_and_ordinary_prose_is_not():
    assert is_repetitive(LOOP) and repeated_share(LOOP) > 0.3
    assert not is_repetitive(PROSE) and repeated_share(PROSE) == 0.0
    assert is_repetitive("Pay the bill on time. Pay the bill on time.")  # one sentence twice
    assert not is_repetitive("yes") and not is_repetitive("")


def test_flags_and_counts_before_to_after():
    samples = [{"prompt": "p", "before": PROSE, "after": LOOP, "truncated": {"before": False, "after": True}},
               {"prompt": "q", "before": LOOP, "after": PROSE}]
    flagged, counts = flag_samples(samples)
    assert flagged[0]["flags"] == {"before": [], "after": ["repetitive", "truncated"]}
    assert flagged[1]["flags"] == {"before": ["repetitive"], "after": []}  # truncation unknown: not flagged
    assert counts["repetitive"] == {"before": 1, "after": 1} and counts["truncated"] == {"before": 0, "after": 1}
    assert describe_counts(counts) == ["repetitive: 1 -> 1 of 2 answers (before -> after)",
                                       "truncated: 0 -> 1 of 2 answers (before -> after)"]
