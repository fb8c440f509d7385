"""The compare report's recommendation: sentences built only from measured numbers.

Inputs are the compare report's parts: ``systems[name][metric] = {"value", "low", "high"}``,
``table`` rows {"system", "latency_s", "prompt_tokens", ...} and ``paired`` results of every
system against the reference system ("fine-tuned" when present). A difference whose paired test
says "within noise" is never called a win.
"""

from __future__ import annotations

from typing import Mapping, Sequence

TUNED = "fine-tuned"


def _cost_sentence(tuned: str, other: str, rows: Mapping[str, Mapping]) -> str:
    lt, lo = rows[tuned]["latency_s"], rows[other]["latency_s"]
    tt, to = rows[tuned]["prompt_tokens"], rows[other]["prompt_tokens"]
    parts = []
    if lt and lo:
        faster, slower = (tuned, other) if lt <= lo else (other, tuned)
        parts.append(f"{faster} is {max(lt, lo) / min(lt, lo):.1f}x faster per query than {slower} "
                     f"({min(lt, lo):.3g} s vs {max(lt, lo):.3g} s)")
    if tt and to and tt != to:
        fewer = tuned if tt < to else other
        parts.append(f"{fewer} uses {max(tt, to) / min(tt, to):.1f}x fewer prompt tokens")
    return "; ".join(parts) + "." if parts else ""


def recommend(
    systems: Mapping[str, Mapping[str, Mapping[str, float]]],
    table: Sequence[Mapping],
    paired: Sequence[Mapping],
    metric: str,
) -> str:
    """A few sentences: quality ratio, speed and token ratios, noise verdict, and the pick."""
    quality = {name: scores[metric]["value"] for name, scores in systems.items()}
    rows = {row["system"]: row for row in table}
    tests = {p["b"]: p for p in paired}
    best = max(quality, key=lambda n: (quality[n], -rows[n]["latency_s"]))
    if quality[best] == 0:
        return f"No system scored above 0 on {metric}; these numbers cannot tell the options apart."
    if TUNED not in quality:
        return _recommend_without_tuned(best, quality, tests, metric)
    untrained = [n for n in quality if not n.startswith(TUNED)]
    rival = max(untrained, key=lambda n: (quality[n], -rows[n]["latency_s"]))
    q_t, q_r = quality[TUNED], quality[rival]
    share = f"{rival} reaches {q_r / q_t:.0%} of fine-tuned quality" if q_t > 0 else f"{rival} scores {q_r:.3f}"
    test = tests[rival]
    verdict = "within noise" if test["within_noise"] else "a significant difference"
    lines = [
        f"{share} ({metric} {q_r:.3f} vs {q_t:.3f}, difference {test['difference']:+.3f}, "
        f"p={test['p_value']:.2g}: {verdict}) with no training.",
        _cost_sentence(TUNED, rival, rows),
    ]
    combo = [n for n in quality if n.startswith(TUNED + " +")]
    top_combo = max(combo, key=lambda n: quality[n]) if combo else None
    if top_combo and quality[top_combo] > q_t and not tests[top_combo]["within_noise"]:
        pick = f"Recommendation: {top_combo}: retrieval adds significantly to the fine-tuned model."
    elif test["within_noise"]:
        pick = f"Recommendation: {rival}: it matches fine-tuning within noise and needs no training."
    elif q_t > q_r:
        pick = "Recommendation: fine-tune: it beats every no-training option beyond noise."
    else:
        pick = f"Recommendation: {rival}: it beats the fine-tuned model beyond noise."
    return " ".join(s for s in lines + [pick] if s)


def _recommend_without_tuned(best: str, quality: Mapping[str, float], tests: Mapping, metric: str) -> str:
    if best == "base zero-shot":
        return f"Recommendation: base zero-shot: nothing scored higher on {metric} ({quality[best]:.3g})."
    test = tests[best]
    if test["within_noise"]:
        return (f"{best} scores {quality[best]:.3g} on {metric} vs {quality['base zero-shot']:.3g} zero-shot, "
                f"within noise (p={test['p_value']:.2g}). Recommendation: base zero-shot (simplest).")
    return (f"Recommendation: {best}: {metric} {quality[best]:.3g} vs {quality['base zero-shot']:.3g} zero-shot "
            f"(p={test['p_value']:.2g}, beyond noise). No fine-tuned model was given to compare.")
