"""Generation metrics: answer normalisation, exact match, token F1, ROUGE-1/2/L, BLEU.

Per-example functions take one prediction and one reference string and return a float in
[0, 1] (BLEU in [0, 100], sacrebleu's scale). Corpus functions take equal-length lists and
return a dict of named scores. Exact match and token F1 follow the SQuAD v1.1 evaluation script
(Rajpurkar et al. 2016): lowercase, drop punctuation, drop the articles a/an/the, collapse
whitespace. ROUGE comes from Google's ``rouge-score`` (F-measure, Lin 2004); BLEU from
``sacrebleu`` (Post 2018) so scores match what papers report.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from functools import lru_cache
from typing import Sequence

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD-style normaliser: lowercase, strip punctuation and articles, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, reference: str) -> float:
    """1.0 when the normalised strings are equal, else 0.0."""
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_f1(prediction: str, reference: str) -> float:
    """Harmonic mean of token precision and recall over normalised bag-of-words overlap.

    Two empty answers score 1.0; one empty answer scores 0.0 (as in the SQuAD 2.0 script).
    """
    pred = normalize_answer(prediction).split()
    ref = normalize_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = Counter(pred) & Counter(ref)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision = overlap / len(pred)
    recall = overlap / len(ref)
    return 2 * precision * recall / (precision + recall)


@lru_cache(maxsize=1)
def _rouge_scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=False)


def rouge(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1, ROUGE-2 and ROUGE-L F-measures of one prediction against one reference."""
    scores = _rouge_scorer().score(reference, prediction)
    return {name: float(scores[name].fmeasure) for name in ROUGE_TYPES}


def rouge_l(prediction: str, reference: str) -> float:
    """ROUGE-L F-measure (longest common subsequence of tokens)."""
    return rouge(prediction, reference)["rougeL"]


def sentence_bleu(prediction: str, reference: str) -> float:
    """sacrebleu sentence BLEU (0-100, exponential smoothing) of one prediction."""
    import sacrebleu

    return float(sacrebleu.sentence_bleu(prediction, [reference]).score)


def corpus_bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """sacrebleu corpus BLEU (0-100) with one reference per prediction."""
    import sacrebleu

    _check_lengths(predictions, references)
    if not predictions:
        return 0.0
    return float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score)


def per_example_scores(predictions: Sequence[str], references: Sequence[str]) -> dict[str, list[float]]:
    """Per-example exact_match, token_f1, rouge1, rouge2, rougeL (each a list, one per example).

    These lists are what bootstrap intervals and paired tests resample.
    """
    _check_lengths(predictions, references)
    out: dict[str, list[float]] = {"exact_match": [], "token_f1": [], **{k: [] for k in ROUGE_TYPES}}
    for pred, ref in zip(predictions, references):
        out["exact_match"].append(exact_match(pred, ref))
        out["token_f1"].append(token_f1(pred, ref))
        for name, value in rouge(pred, ref).items():
            out[name].append(value)
    return out


def generation_metrics(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus scores: means of the per-example metrics plus corpus BLEU.

    Returns {"exact_match", "token_f1", "rouge1", "rouge2", "rougeL", "bleu"}; all but BLEU in
    [0, 1]; an empty input gives zeros.
    """
    per = per_example_scores(predictions, references)
    scores = {name: (sum(vals) / len(vals) if vals else 0.0) for name, vals in per.items()}
    scores["bleu"] = corpus_bleu(predictions, references)
    return scores


def generation_intervals(
    predictions: Sequence[str],
    references: Sequence[str],
    *,
    confidence: float = 0.95,
    n_resamples: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """``generation_metrics`` with percentile-bootstrap intervals: {metric: {"value", "low", "high", ...}}.

    Per-example metrics resample their per-example scores; BLEU is recomputed on each resample
    of the corpus (it is not a mean of sentence scores).
    """
    from lmforge.evaluate.uncertainty import bootstrap_corpus_interval, bootstrap_interval

    per = per_example_scores(predictions, references)
    kw = {"confidence": confidence, "n_resamples": n_resamples, "seed": seed}
    out = {name: bootstrap_interval(vals, **kw).to_dict() for name, vals in per.items()}
    preds, refs = list(predictions), list(references)
    bleu = bootstrap_corpus_interval(
        lambda idx: corpus_bleu([preds[i] for i in idx], [refs[i] for i in idx]), len(preds), **kw
    )
    out["bleu"] = bleu.to_dict()
    return out


def _check_lengths(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references")
