"""The statistics of a pre-registered test: candidate metrics, paired reductions with their
intervals, the share of a gap closed, the test conditions, and the seeds a given effect needs.

Comparisons are paired: the same images, the same seed. An interval is the wider of an image
bootstrap and a t-interval over seeds (the seed stays the unit). :mod:`bmclib.bench.controls`
runs these on positive and negative controls; :mod:`bmclib.bench.verdict` on a benchmark's runs;
:mod:`bmclib.bench.benchmark` checks a benchmark file's metric and conditions against them.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np

__all__ = ["METRICS", "CONDITIONS", "paired_reduction", "gap_share", "power"]

#: the candidate metrics (per image, lower is better; :func:`bmclib.evaluate.per_image_metrics`)
METRICS = ("depth_norm_mm", "depth_mm", "root_depth_mm", "pa_mpjpe_mm", "epe_3d_mm", "abs_3d_depth_part_mm",
           "epe_2d_px")


def paired_reduction(x: np.ndarray, base: np.ndarray, n_boot: int = 2000, seed: int = 0) -> dict[str, float]:
    """The relative reduction ``1 - mean(x) / mean(base)`` of a per-image metric, paired: ``x`` and
    ``base`` are ``(seeds, images)`` on the same images. Positive: ``x`` is better.

    The 95% interval is the wider of two: a bootstrap over images (the same images for both arms,
    within each seed) and, with two seeds or more, a t-interval (``S - 1`` degrees of freedom) on the
    per-seed reductions. With 3 seeds a bootstrap that also resamples seeds covers a 10% effect only
    76-86% of the time when the effect varies between seeds (a reviewer's simulation); the t-interval
    keeps the seed the unit."""
    x, base = np.atleast_2d(x), np.atleast_2d(base)
    g = np.random.default_rng(seed)
    S, N = x.shape
    est = 1 - x.mean() / base.mean()
    if n_boot < 1:
        raise ValueError(f"n_boot: expected an integer >= 1 (bootstrap resamples), got {n_boot}")
    boots = np.empty(n_boot)
    for b in range(n_boot):
        ii = g.integers(0, N, N)
        boots[b] = 1 - x[:, ii].mean() / base[:, ii].mean()
    lo, hi = np.percentile(boots, [2.5, 97.5])
    per_seed = 1 - x.mean(1) / base.mean(1)
    if S >= 2:
        from scipy.stats import t

        half = t.ppf(0.975, S - 1) * per_seed.std(ddof=1) / math.sqrt(S)
        lo, hi = min(lo, per_seed.mean() - half), max(hi, per_seed.mean() + half)
    return {"reduction": float(est), "lo": float(lo), "hi": float(hi), "every_seed": bool((per_seed > 0).all()),
            "per_seed": per_seed.tolist()}


def gap_share(x: np.ndarray, base: np.ndarray, oracle: np.ndarray, n_boot: int = 2000, seed: int = 0) -> dict[str, float]:
    """The share of the no-BMC -> oracle gap ``x`` closes, ``(mean(base) - mean(x)) / (mean(base) -
    mean(oracle))``, with the interval built as in :func:`paired_reduction` (images resampled together
    for the three arms; a t-interval on the per-seed shares with two seeds or more)."""
    x, base, oracle = (np.atleast_2d(a) for a in (x, base, oracle))
    g = np.random.default_rng(seed)
    S, N = x.shape

    def share(xs, bs, os_):
        gap = bs.mean() - os_.mean()
        return (bs.mean() - xs.mean()) / gap if gap > 0 else float("nan")
    est = share(x, base, oracle)
    if n_boot < 1:
        raise ValueError(f"n_boot: expected an integer >= 1 (bootstrap resamples), got {n_boot}")
    boots = np.empty(n_boot)
    for b in range(n_boot):
        ii = g.integers(0, N, N)
        boots[b] = share(x[:, ii], base[:, ii], oracle[:, ii])
    lo, hi = np.nanpercentile(boots, [2.5, 97.5]) if np.isfinite(boots).any() else (np.nan, np.nan)
    per_seed = np.array([share(x[i], base[i], oracle[i]) for i in range(S)])
    if S >= 2 and np.isfinite(per_seed).all():
        from scipy.stats import t

        half = t.ppf(0.975, S - 1) * per_seed.std(ddof=1) / math.sqrt(S)
        lo, hi = min(lo, per_seed.mean() - half), max(hi, per_seed.mean() + half)
    # where the oracle is not better than the base (a seed, or a resample) the share is undefined: the
    # interval above leaves those out, so a caller reports how many there were
    return {"share": float(est), "lo": float(lo), "hi": float(hi), "undefined_seeds": int((~np.isfinite(per_seed)).sum()),
            "undefined_resamples": float((~np.isfinite(boots)).mean())}


def _reduction_vs_base(arm, base, flat, oracle, n_boot: int = 2000) -> bool:
    return paired_reduction(arm, base, n_boot)["lo"] > 0


def _beats_flat(arm, base, flat, oracle, n_boot: int = 2000) -> bool:
    return paired_reduction(arm, flat, n_boot)["lo"] > 0


def _closes_gap(arm, base, flat, oracle, share: float = 0.25, n_boot: int = 2000) -> bool:
    r = gap_share(arm, base, oracle, n_boot)
    return bool(np.isfinite(r["share"]) and r["share"] >= share and r["lo"] > 0)


#: condition -> (sentence, test(arm, base, flat-on-the-arm's-2D, oracle, n_boot=...) -> bool, the arm it
#: compares with); arrays ``(seeds, images)``
CONDITIONS: dict[str, tuple[str, Callable[..., bool], str]] = {
    "better_than_no_bmc": ("paired reduction vs the no-BMC run, 95% interval above 0", _reduction_vs_base, "base"),
    "beats_flat": ("paired reduction vs a flat hand at the source's median distance on the same 2D, 95% interval "
                   "above 0", _beats_flat, "flat"),
    "closes_25pct_of_gap": ("closes >= 25% of the no-BMC -> oracle gap, and its 95% interval is above 0",
                            _closes_gap, "oracle"),
}


def power(diff_per_seed: np.ndarray, base_mean: float, images_sd: float | None = None, n_images: int | None = None,
          effect: float = 0.25, alpha: float = 0.025, beta: float = 0.2) -> dict[str, float]:
    """Seeds (and images) needed to see a paired reduction of ``effect`` x ``base_mean`` with the test
    the conditions use (a 95% interval above 0: one-sided ``alpha`` 2.5%) at power ``1 - beta``:
    the smallest ``n >= 2`` with ``n >= ((t_{1-alpha, n-1} + t_{1-beta, n-1}) sd / delta)^2``, ``sd``
    the seed-to-seed spread of the paired difference ``diff_per_seed``; with ``images_sd`` (the
    root-mean-square within-seed spread of the per-image paired difference) also the images one seed
    needs (normal quantiles)."""
    from statistics import NormalDist

    from scipy.stats import t

    delta = effect * base_mean
    d = np.asarray(diff_per_seed, dtype=float)
    sd = float(d.std(ddof=1)) if len(d) > 1 else float("nan")
    need: float = float("nan")
    if np.isfinite(sd):  # no effect to find, or past 10,000 seeds (an effect lost in the spread): inf
        need = float("inf") if not delta > 0 else next(
            (n for n in range(2, 10_000) if n >= ((t.ppf(1 - alpha, n - 1) + t.ppf(1 - beta, n - 1)) * sd / delta) ** 2),
            float("inf"))
    out = {"effect": effect, "delta": delta, "seed_sd": sd, "seeds_needed": need, "seeds_measured": int(len(d))}
    if images_sd is not None:
        z = NormalDist().inv_cdf(1 - alpha) + NormalDist().inv_cdf(1 - beta)
        out["images_sd"] = float(images_sd)
        ratio = (z * images_sd / delta) ** 2 if delta > 0 else float("inf")
        out["images_needed"] = max(1, math.ceil(ratio)) if np.isfinite(ratio) else float("inf")
        if n_images:
            out["images_measured"] = int(n_images)
    return out
