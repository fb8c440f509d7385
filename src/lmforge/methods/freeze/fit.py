"""Fit a pooled linear head to convergence on frozen features: L2-regularised logistic regression by
full-batch L-BFGS (scikit-learn's ``LogisticRegression`` objective, solved the same way).

While the encoder is frozen the head's problem is convex and small (n x hidden features), so instead
of a few epochs of AdamW (which left the head far from its optimum: macro-F1 0.69-0.74 on MiniLM
features where a fitted logistic regression reaches 0.95), the head is solved:

    minimise  0.5 ||W||^2 + C sum_i CE(W x_i + b, y_i)        (the bias is not penalised)

on the raw pooled features ``x``: multinomial (softmax) for 3+ classes; for 2 classes one logit
vector (class 0's logit fixed at 0), so C means exactly what it means in scikit-learn. ``C`` is 1.0
by default (scikit-learn's default), or, with ``c=None``, chosen from :data:`C_GRID` by ``folds``-fold
stratified cross-validation on the training features (the macro-F1 of the out-of-fold predictions,
the metric a classification run selects on; ties go to the lower out-of-fold cross-entropy, then to
the smaller C); held-out data choose nothing. Starts from zeros, float64: the same features give
the same weights (the optimum is unique).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

C_GRID = tuple(round(10 ** (e / 2), 6) for e in range(-2, 9))  # 0.1 ... 1e4, x3.16 apart


@dataclass(frozen=True)
class LinearFit:
    """A fitted head: ``weight`` (K, H) and ``bias`` (K,) on raw features, and how it was chosen."""

    weight: torch.Tensor
    bias: torch.Tensor
    c: float
    folds: int  # cross-validation folds used (0: C was given, or too few examples per class)
    cv: dict[float, tuple[float, float]]  # C -> (out-of-fold macro-F1, mean cross-entropy); {} when C was given
    train_loss: float  # regularised objective at the optimum
    iterations: int

    def summary(self) -> dict:
        out = asdict(self)
        out.pop("weight"), out.pop("bias")
        out["cv"] = {f"{c:g}": {"f1_macro": round(f1, 6), "loss": round(loss, 6)} for c, (f1, loss) in self.cv.items()}
        return out


def fit_logistic(x: torch.Tensor, y: torch.Tensor, num_classes: int, *, c: float | None = 1.0,
                 folds: int = 5, seed: int = 0, grid: tuple[float, ...] = C_GRID) -> LinearFit:
    """Fit the head on features ``x`` (n, H) and class ids ``y`` (n,) (see the module doc).

    ``c``: the inverse L2 strength, or None to choose it from ``grid`` by ``folds``-fold CV (folds
    shrink to the smallest class count; fewer than 2 examples per class: C = 1, no CV).
    """
    x64, y = x.detach().double().cpu(), y.detach().long().cpu()
    cv: dict[float, tuple[float, float]] = {}
    splits = _stratified_folds(y, folds, seed) if c is None else []
    if c is None:
        if splits:
            cv = _cross_validate(x64, y, num_classes, grid, splits)
            c = max(grid, key=lambda g: (round(cv[g][0], 9), -round(cv[g][1], 9), -g))
        else:
            c = 1.0
    weight, bias, loss, iters = _lbfgs(x64, y, num_classes, c)
    return LinearFit(weight.float(), bias.float(), float(c), len(splits), cv, float(loss), iters)


def _cross_validate(z: torch.Tensor, y: torch.Tensor, k: int, grid: tuple[float, ...],
                    splits: list[torch.Tensor]) -> dict[float, tuple[float, float]]:
    """C -> (macro-F1 of the out-of-fold predictions, their mean cross-entropy): each fold predicted by
    the head fitted on the other folds. Within a fold the C grid is walked upwards, each fit starting
    from the previous optimum (the same optimum, fewer iterations)."""
    predictions = {c: torch.empty(len(y), dtype=torch.long) for c in grid}
    losses = dict.fromkeys(grid, 0.0)
    for held in splits:
        keep = torch.ones(len(y), dtype=torch.bool)
        keep[held] = False
        start = None
        for c in sorted(grid):
            w, b, _, _ = _lbfgs(z[keep], y[keep], k, c, start=start)
            start = (w, b)
            logits = z[held] @ w.T + b
            predictions[c][held] = logits.argmax(1)
            losses[c] += float(F.cross_entropy(logits, y[held], reduction="sum"))
    return {c: (macro_f1(predictions[c], y, k), losses[c] / len(y)) for c in grid}


def macro_f1(pred: torch.Tensor, gold: torch.Tensor, k: int) -> float:
    """Macro-F1 over the classes present in ``gold`` or ``pred`` (as lmforge.evaluate reports it)."""
    scores = []
    for cls in range(k):
        tp = int(((pred == cls) & (gold == cls)).sum())
        predicted, actual = int((pred == cls).sum()), int((gold == cls).sum())
        if predicted or actual:
            scores.append(2 * tp / (predicted + actual))
    return sum(scores) / len(scores) if scores else 0.0


def _stratified_folds(y: torch.Tensor, folds: int, seed: int) -> list[torch.Tensor]:
    """Index tensors of ``folds`` folds, each class spread evenly (seeded shuffle); [] when a class has
    fewer than 2 examples."""
    counts = torch.bincount(y)
    smallest = int(counts[counts > 0].min()) if len(y) else 0
    folds = min(folds, smallest)
    if folds < 2:
        return []
    gen = torch.Generator().manual_seed(seed)
    assignment = torch.empty(len(y), dtype=torch.long)
    for cls in torch.unique(y):
        members = torch.nonzero(y == cls).flatten()
        members = members[torch.randperm(len(members), generator=gen)]
        assignment[members] = torch.arange(len(members)) % folds
    return [torch.nonzero(assignment == f).flatten() for f in range(folds)]


def _lbfgs(z: torch.Tensor, y: torch.Tensor, k: int, c: float, max_iter: int = 1000,
           start: tuple[torch.Tensor, torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor, float, int]:
    """(W (k, H), b (k,), objective / (C n), iterations) minimising the module doc's objective from
    zeros (or from ``start``). Two classes: one free logit row (row 0 stays 0), as scikit-learn."""
    n, h = z.shape
    rows = 1 if k == 2 else k
    weight = (start[0][-rows:].clone() if start else torch.zeros(rows, h, dtype=torch.float64)).requires_grad_(True)
    bias = (start[1][-rows:].clone() if start else torch.zeros(rows, dtype=torch.float64)).requires_grad_(True)
    lam = 1.0 / (c * max(n, 1))  # the objective divided by C n: a mean cross-entropy, well scaled for L-BFGS
    opt = torch.optim.LBFGS([weight, bias], lr=1.0, max_iter=max_iter, history_size=20, tolerance_grad=1e-9,
                            tolerance_change=1e-12, line_search_fn="strong_wolfe")

    def logits(w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        out = z @ w.T + b
        return torch.cat([torch.zeros_like(out), out], 1) if k == 2 else out

    def objective() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(logits(weight, bias), y) + 0.5 * lam * (weight * weight).sum()
        loss.backward()
        return loss

    opt.step(objective)
    with torch.no_grad():
        final = float(F.cross_entropy(logits(weight, bias), y) + 0.5 * lam * (weight * weight).sum())
    iters = int(opt.state[weight].get("n_iter", 0))
    if not math.isfinite(final):
        raise ValueError("the head's fit diverged (non-finite loss)")
    w, b = weight.detach(), bias.detach()
    if k == 2:
        w, b = torch.cat([torch.zeros_like(w), w]), torch.cat([torch.zeros_like(b), b])
    return w, b, final, iters
