"""Probabilistic scores of ensemble forecasts: CRPS, exceedance probabilities, spread–skill, reliability.

Ensembles are ``(M, ...)`` tensors or arrays, members first; observations have the shape of one
member. Masks (1 or True where the observation is valid) have the observation's shape. NaN in an
observation counts as invalid.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dacast.verify._arrays import Array, as_float, as_mask

__all__ = ["crps_ensemble", "crps_members", "exceedance_probability", "reliability", "spread_skill"]


def _ensemble_and_mask(ensemble: Array, observed: Array, mask: Array | None) -> tuple[Tensor, Tensor, Tensor]:
    ens, obs = as_float(ensemble), as_float(observed)
    if ens.ndim < 1 or ens.shape[1:] != obs.shape:
        raise ValueError(f"ensemble {tuple(ens.shape)} must be (M, *observed.shape), observed {tuple(obs.shape)}")
    if ens.shape[0] < 1:
        raise ValueError("ensemble has no members")
    valid = torch.isfinite(obs)
    if mask is not None:
        valid = valid & as_mask(mask, obs)
    return ens, torch.nan_to_num(obs), valid


def crps_members(ensemble: Tensor, observed: Tensor, *, fair: bool = False) -> Tensor:
    """Pointwise CRPS of an ensemble, ``mean_i |X_i − y| − 1/(2 M²) Σ_ij |X_i − X_j|`` (see `crps_ensemble`).

    The pair sum comes from the sorted members, ``Σ_ij |X_i − X_j| = 2 Σ_i (2i − M + 1) X_(i)``
    (``O(M log M)``, no ``M × M`` tensor); differentiable, in the dtype and on the device of the input,
    so training losses use it too (`dacast.ml.fair_crps_loss`).

    Args:
        ensemble: ``(M, ...)`` members, in the units of ``observed``.
        observed: ``(...)`` observation.
        fair: divide the pair sum by ``2 M (M − 1)`` (Ferro 2014); needs ``M >= 2``.

    Returns:
        ``(...)`` CRPS per point (units of the data).
    """
    m = ensemble.shape[0]
    if fair and m < 2:
        raise ValueError("the fair CRPS needs at least 2 members")
    skill = (ensemble - observed).abs().mean(0)
    coef = (2 * torch.arange(m, dtype=ensemble.dtype, device=ensemble.device) - m + 1).reshape(
        -1, *([1] * observed.ndim)
    )
    pair_sum = 2 * (coef * ensemble.sort(dim=0).values).sum(0)
    return skill - pair_sum / (2 * m * (m - 1) if fair else 2 * m * m)


def crps_ensemble(ensemble: Array, observed: Array, mask: Array | None = None, *, fair: bool = False) -> Tensor:
    """Continuous ranked probability score of an ensemble, averaged over valid points.

    ``CRPS = mean_i |X_i − y| − 1/(2 M²) Σ_ij |X_i − X_j|``: the CRPS of the ensemble's empirical
    distribution (pysteps' ``probscores.CRPS`` computes the same number through Hersbach's
    decomposition). With ``fair=True`` the second sum is divided by ``2 M (M − 1)`` instead: the
    unbiased estimate of the CRPS of the distribution the members are drawn from (Ferro 2014).
    A deterministic forecast (``M = 1``) gives the mean absolute error.

    Args:
        ensemble: ``(M, ...)`` members, in the units of ``observed`` (e.g. mm/h).
        observed: ``(...)`` observation.
        mask: valid points ``(...)``; None: all finite observations.
        fair: the fair (unbiased) version; needs ``M >= 2``.

    Returns:
        Scalar CRPS (units of the data), NaN when no point is valid; 0 for a perfect deterministic forecast.
    """
    ens, obs, valid = _ensemble_and_mask(ensemble, observed, mask)
    crps = crps_members(ens, obs, fair=fair)
    return crps[valid].mean() if valid.any() else crps.new_tensor(float("nan"))


def exceedance_probability(ensemble: Array, threshold: float) -> Tensor:
    """Fraction of members above ``threshold`` (``X > thr``, as the categorical scores count events).

    Args:
        ensemble: ``(M, ...)`` members.
        threshold: in the units of the members (e.g. 1 mm/h).

    Returns:
        ``(...)`` probabilities in ``[0, 1]`` (multiples of ``1/M``).
    """
    ens = as_float(ensemble)
    return (ens > threshold).to(ens.dtype).mean(0)


def spread_skill(ensemble: Array, observed: Array, mask: Array | None = None) -> tuple[float, float, float]:
    """Spread–skill of an ensemble over valid points.

    Skill is the RMSE of the ensemble mean; spread is ``sqrt((M + 1)/M · mean(var))`` with the
    unbiased member variance, so that a calibrated ensemble (truth statistically one more member)
    has ratio 1 in expectation (Fortin et al. 2014).

    Returns:
        ``(spread, rmse, spread / rmse)``; the ratio is NaN when the RMSE is 0 or no point is valid.
    """
    ens, obs, valid = _ensemble_and_mask(ensemble, observed, mask)
    m = ens.shape[0]
    if m < 2:
        raise ValueError("spread needs at least 2 members")
    if not valid.any():
        nan = float("nan")
        return nan, nan, nan
    var = ens.var(0, unbiased=True)[valid].mean()
    spread = float(((m + 1) / m * var).sqrt())
    rmse = float(((ens.mean(0) - obs)[valid] ** 2).mean().sqrt())
    return spread, rmse, spread / rmse if rmse > 0 else float("nan")


def reliability(
    probability: Array, observed: Array, threshold: float, mask: Array | None = None, *, n_bins: int = 10
) -> tuple[Tensor, Tensor, Tensor]:
    """Reliability-diagram counts: observed frequency of ``observed > threshold`` per forecast-probability bin.

    Args:
        probability: ``(...)`` forecast probabilities in ``[0, 1]`` (e.g. `exceedance_probability`).
        observed: ``(...)`` observation.
        threshold: event threshold, units of ``observed``.
        mask: valid points; None: all finite observations.
        n_bins: equal-width bins on ``[0, 1]`` (the last includes 1).

    Returns:
        ``(mean_probability, observed_frequency, count)``, each ``(n_bins,)``; empty bins hold NaN and 0.
        Sum the counts of several cases (``count`` and ``frequency · count``) to pool them.
    """
    prob, obs = as_float(probability), as_float(observed)
    if prob.shape != obs.shape:
        raise ValueError(f"probability {tuple(prob.shape)} and observed {tuple(obs.shape)} differ in shape")
    valid = torch.isfinite(obs)
    if mask is not None:
        valid = valid & as_mask(mask, obs)
    p, event = prob[valid], (obs[valid] > threshold).to(prob.dtype)
    idx = (p * n_bins).long().clamp(0, n_bins - 1)
    count = torch.bincount(idx, minlength=n_bins).to(prob.dtype)
    p_sum = torch.bincount(idx, weights=p, minlength=n_bins)
    o_sum = torch.bincount(idx, weights=event, minlength=n_bins)
    nan = torch.full_like(count, float("nan"))
    safe = count.clamp_min(1)
    return torch.where(count > 0, p_sum / safe, nan), torch.where(count > 0, o_sum / safe, nan), count
