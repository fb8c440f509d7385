"""Compare a traffic window with the training baseline and report drift per signal.

Scalar signals (input_tokens, unk_rate, perplexity): population stability index (PSI, 10 bins on
the baseline's quantiles) and the two-sample Kolmogorov-Smirnov test; drifted when
PSI > psi AND KS p-value < ks_pvalue (PSI alone is noisy on small windows, KS alone flags
trivial shifts on large ones). Embeddings: maximum mean discrepancy (RBF kernel, median
bandwidth) with a seeded permutation p-value, plus the cosine distance of the mean embeddings;
drifted when p < mmd_pvalue. Labels: PSI of the label distribution > psi.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from scipy import stats

from lmforge.errors import UserError
from lmforge.serve.drift import read_window, summarize

DEFAULTS = {"psi": 0.2, "ks_pvalue": 0.01, "mmd_pvalue": 0.01, "min_window": 20}
_EPS = 1e-4


def psi(base: np.ndarray, cur: np.ndarray, bins: int = 10) -> float:
    """Population stability index of ``cur`` against ``base`` on base-quantile bins (x <= edge goes left)."""
    edges = np.unique(np.quantile(base, np.linspace(0, 1, bins + 1))[1:-1])
    b = np.bincount(np.searchsorted(edges, base, side="left"), minlength=len(edges) + 1) / len(base)
    c = np.bincount(np.searchsorted(edges, cur, side="left"), minlength=len(edges) + 1) / len(cur)
    b, c = np.clip(b, _EPS, None), np.clip(c, _EPS, None)
    return float(np.sum((c - b) * np.log(c / b)))


def mmd_test(x: np.ndarray, y: np.ndarray, permutations: int = 200, seed: int = 0) -> tuple[float, float]:
    """Unbiased MMD^2 between samples x [n, d] and y [m, d] and its permutation p-value."""
    z = np.concatenate([x, y]).astype(np.float64)
    sq = np.sum(z * z, 1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0.0)
    med = np.median(d2[np.triu_indices(len(z), 1)]) or 1.0
    k = np.exp(-d2 / med)
    n = len(x)

    def stat(idx: np.ndarray) -> float:
        a, b = idx[:n], idx[n:]
        kxx, kyy, kxy = k[np.ix_(a, a)], k[np.ix_(b, b)], k[np.ix_(a, b)]
        return ((kxx.sum() - np.trace(kxx)) / (n * (n - 1))
                + (kyy.sum() - np.trace(kyy)) / (len(b) * (len(b) - 1)) - 2 * kxy.mean())

    rng = np.random.default_rng(seed)
    observed = stat(np.arange(len(z)))
    null = [stat(rng.permutation(len(z))) for _ in range(permutations)]
    return float(observed), float((1 + sum(v >= observed for v in null)) / (1 + permutations))


def _limits(thresholds: dict | None, signal: str) -> dict:
    lim = dict(DEFAULTS)
    for key, value in (thresholds or {}).items():
        if key in DEFAULTS:
            lim[key] = value
    own = (thresholds or {}).get(signal)
    if isinstance(own, (int, float)):
        lim["mmd_pvalue" if signal == "embedding" else "psi"] = float(own)
    elif isinstance(own, dict):
        lim.update(own)
    return lim


def _scalar(name: str, base: list, cur: list, lim: dict) -> dict:
    b, c = np.asarray(base, float), np.asarray(cur, float)
    p = psi(b, c)
    ks = stats.ks_2samp(b, c)
    drift = bool(p > lim["psi"] and ks.pvalue < lim["ks_pvalue"])
    return {"signal": name, "test": "psi+ks", "psi": round(p, 4), "ks_stat": round(float(ks.statistic), 4),
            "ks_pvalue": float(ks.pvalue), "baseline_mean": float(b.mean()), "window_mean": float(c.mean()),
            "threshold": {"psi": lim["psi"], "ks_pvalue": lim["ks_pvalue"]}, "drift": drift}


def _embedding(base: list, cur: list, lim: dict) -> dict:
    b, c = np.asarray(base, float), np.asarray(cur, float)
    mmd2, pval = mmd_test(b, c)
    mb, mc = b.mean(0), c.mean(0)
    cos = 1.0 - float(mb @ mc / (np.linalg.norm(mb) * np.linalg.norm(mc) + 1e-12))
    return {"signal": "embedding", "test": "mmd", "mmd2": round(mmd2, 6), "mmd_pvalue": pval,
            "mean_cosine_distance": round(cos, 6), "threshold": {"mmd_pvalue": lim["mmd_pvalue"]},
            "drift": bool(pval < lim["mmd_pvalue"])}


def _labels(base: dict, cur: dict, lim: dict) -> dict:
    names = sorted(set(base) | set(cur))
    b = np.clip(np.array([base.get(k, 0) for k in names], float) / max(sum(base.values()), 1), _EPS, None)
    c = np.clip(np.array([cur.get(k, 0) for k in names], float) / max(sum(cur.values()), 1), _EPS, None)
    p = float(np.sum((c - b) * np.log(c / b)))
    return {"signal": "label", "test": "psi", "psi": round(p, 4), "baseline": base, "window": cur,
            "threshold": {"psi": lim["psi"]}, "drift": bool(p > lim["psi"])}


def compare_to_baseline(window: list[dict] | dict, baseline: dict, thresholds: dict | None = None) -> dict:
    """window: window-file records or a ``summarize`` dict; baseline: ``compute_baseline`` output.

    thresholds: global keys psi / ks_pvalue / mmd_pvalue / min_window, and per-signal dicts such
    as {"perplexity": {"psi": 0.3}}. Returns {"drift": bool, "window_n", "baseline_n",
    "signals": [per-signal dict with "drift"], "status": "ok" | "drift" | "insufficient_data"}.
    """
    cur = summarize(window) if isinstance(window, list) else window
    report = {"window_n": cur["n"], "baseline_n": baseline["n"], "signals": []}
    if cur["n"] < _limits(thresholds, "").get("min_window", 20):
        return {**report, "drift": False, "status": "insufficient_data"}
    for name in baseline["scalars"]:
        if len(cur["scalars"].get(name, [])) >= 2:
            report["signals"].append(_scalar(name, baseline["scalars"][name], cur["scalars"][name],
                                             _limits(thresholds, name)))
    if len(baseline.get("embeddings", [])) >= 2 and len(cur.get("embeddings", [])) >= 2:
        report["signals"].append(_embedding(baseline["embeddings"], cur["embeddings"],
                                            _limits(thresholds, "embedding")))
    if baseline.get("labels") and cur.get("labels"):
        report["signals"].append(_labels(baseline["labels"], cur["labels"], _limits(thresholds, "label")))
    drift = any(s["drift"] for s in report["signals"])
    return {**report, "drift": drift, "status": "drift" if drift else "ok"}


def format_report(report: dict) -> list[str]:
    """Human-readable lines, one per signal."""
    lines = [f"drift monitor: {report['status']} (window {report['window_n']} vs baseline {report['baseline_n']})"]
    for s in report["signals"]:
        flag = "DRIFT" if s["drift"] else "ok   "
        if s["test"] == "psi+ks":
            detail = (f"psi={s['psi']:.3f} ks_p={s['ks_pvalue']:.3g} mean {s['baseline_mean']:.3g}"
                      f" -> {s['window_mean']:.3g}")
        elif s["test"] == "mmd":
            detail = f"mmd2={s['mmd2']:.4g} p={s['mmd_pvalue']:.3g} cos_dist={s['mean_cosine_distance']:.3g}"
        else:
            detail = f"psi={s['psi']:.3f}"
        lines.append(f"  {flag} {s['signal']:<13} {detail}")
    return lines


def run_monitor(window_file: str | Path, baseline_file: str | Path, thresholds: dict | None = None,
                last: int | None = None, model: str | None = None) -> dict:
    """What ``lmforge monitor`` calls: read both files, compare, return the report dict."""
    for path, what in ((window_file, "traffic window"), (baseline_file, "baseline")):
        if not Path(path).is_file():
            raise UserError(f"no {what} file", where=str(path),
                            hint="serve traffic writes the window; training writes the baseline")
    baseline = json.loads(Path(baseline_file).read_text(encoding="utf-8"))
    return compare_to_baseline(read_window(window_file, last=last, model=model), baseline, thresholds)
