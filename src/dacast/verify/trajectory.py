"""Scores of trajectories and ensembles: RMSE, spread, time means, valid time, pooled threat scores.

Every cycling application (twin, surrogate cycle, BDA twin) scores its runs
with these, so an RMSE means the same thing everywhere: the root of the mean
square over the state axes named by ``dim``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from torch import Tensor

#: The counts of a 2x2 contingency table, as `contingency_counts` writes them.
COUNT_KEYS = ("hits", "misses", "false_alarms", "correct_negatives")


def rms(x: Tensor, dim: int | tuple[int, ...] | None = None) -> Tensor:
    """``sqrt(mean(x**2))`` over ``dim`` (all axes when ``None``); units of ``x``."""
    sq = x.pow(2)
    return (sq.mean() if dim is None else sq.mean(dim=dim)).sqrt()


def rmse(estimate: Tensor, truth: Tensor, dim: int | tuple[int, ...] | None = None) -> Tensor:
    """Root-mean-square error of ``estimate`` against ``truth`` (same shape) over ``dim`` (all axes when ``None``)."""
    return rms(estimate - truth, dim)


def ensemble_spread(ensemble: Tensor, dim: int | tuple[int, ...] | None = None) -> Tensor:
    """``sqrt(mean over dim of the ensemble variance (ddof=1))`` of ``ensemble`` ``(members, *state)``.

    ``dim`` counts axes of the state (after the member axis is reduced); ``None``: all.
    """
    var = ensemble.var(0)
    return (var.mean() if dim is None else var.mean(dim=dim)).sqrt()


def time_mean_rmse(estimate: Tensor, truth: Tensor, skip: int = 0) -> float:
    """``mean_t sqrt(mean_var (estimate - truth)**2)`` over rows ``skip:`` of ``(time, n_var)`` arrays.

    NaN when any of those rows holds NaN (a diverged run).
    """
    return float(rmse(estimate[skip:], truth[skip:], dim=-1).mean())


def valid_time(normalized_rmse: np.ndarray, lead_time: float, threshold: float = 0.5) -> float:
    """Time until ``normalized_rmse`` (one value per lead ``1, 2, ...``) first exceeds ``threshold``.

    Returns ``n_leads * lead_time`` when it never does (a lower bound); NaN counts as exceeding.
    """
    above = np.nonzero(~(normalized_rmse <= threshold))[0]
    return float((above[0] if above.size else normalized_rmse.size) * lead_time)


def pooled_csi(tables: Sequence[Mapping[str, Sequence[float]]]) -> list[float]:
    """Critical success index per lead, pooled over several forecasts.

    Args:
        tables: one mapping per forecast with the per-lead counts under `COUNT_KEYS`
            (``hits``, ``misses``, ``false_alarms``), each of length ``n_leads``.

    Returns:
        ``sum(hits) / sum(hits + misses + false_alarms)`` per lead (NaN where the event never occurred).
    """
    hits = np.sum([t["hits"] for t in tables], axis=0)
    misses = np.sum([t["misses"] for t in tables], axis=0)
    fa = np.sum([t["false_alarms"] for t in tables], axis=0)
    den = hits + misses + fa
    return [float(h / d) if d > 0 else float("nan") for h, d in zip(hits, den, strict=True)]


__all__ = ["COUNT_KEYS", "ensemble_spread", "pooled_csi", "rms", "rmse", "time_mean_rmse", "valid_time"]
