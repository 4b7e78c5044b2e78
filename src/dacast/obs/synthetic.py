"""Synthetic observations from a truth run."""

from __future__ import annotations

import torch
from torch import Tensor

from dacast.obs.operators import ObsOperator


def observe(truth: Tensor, operator: ObsOperator, generator: torch.Generator) -> Tensor:
    """Observations ``H(truth) + e`` with ``e ~ N(0, diag(error_std**2))``.

    Args:
        truth: true states, shape ``(*times, n_state)``.
        operator: the observation operator.
        generator: explicit random source.

    Returns:
        Observations, shape ``(*times, n_obs)``, same dtype as ``truth``.
    """
    clean = operator(truth)
    noise = torch.randn(clean.shape, generator=generator, dtype=clean.dtype, device="cpu").to(clean.device)
    return clean + noise * operator.error_std.to(dtype=clean.dtype, device=clean.device)
