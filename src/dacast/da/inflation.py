"""Inflation applied after the analysis: RTPP and RTPS (Whitaker & Hamill 2012).

Multiplicative inflation lives inside the ensemble-space matrix of the
transform filters (see `dacast.da.transform`). All functions here are pure.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _check_alpha(alpha: float, name: str) -> None:
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got {alpha}")


def rtpp(prior: Tensor, analysis: Tensor, alpha: float) -> Tensor:
    """Relaxation to prior perturbations: Xa' <- (1 - α) Xa' + α Xb'.

    Args:
        prior: prior ensemble, shape ``(k, *state)``.
        analysis: analysis ensemble, shape ``(k, *state)``.
        alpha: relaxation weight in [0, 1] (0: no change; 1: prior perturbations).

    Returns:
        Relaxed analysis ensemble, shape ``(k, *state)``; the analysis mean is kept.
    """
    _check_alpha(alpha, "RTPP alpha")
    if alpha == 0.0:
        return analysis.clone()
    mean = analysis.mean(0, keepdim=True)
    return mean + (1.0 - alpha) * (analysis - mean) + alpha * (prior - prior.mean(0, keepdim=True))


def rtps(prior: Tensor, analysis: Tensor, alpha: float) -> Tensor:
    """Relaxation to prior spread: Xa' <- Xa' (α σb + (1 - α) σa) / σa, pointwise.

    Args:
        prior: prior ensemble, shape ``(k, *state)``.
        analysis: analysis ensemble, shape ``(k, *state)``.
        alpha: relaxation weight in [0, 1].

    Returns:
        Inflated analysis ensemble, shape ``(k, *state)``; the analysis mean is kept.
    """
    _check_alpha(alpha, "RTPS alpha")
    if alpha == 0.0:
        return analysis.clone()
    mean = analysis.mean(0, keepdim=True)
    sa = analysis.std(0, keepdim=True)
    sb = prior.std(0, keepdim=True)
    factor = torch.where(sa > 0, (alpha * sb + (1.0 - alpha) * sa) / sa.clamp_min(1e-300), torch.ones_like(sa))
    return mean + (analysis - mean) * factor
