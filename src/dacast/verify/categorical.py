"""Contingency tables and the categorical scores made from them.

Event convention: **value > threshold**, as pysteps'
``pysteps.verification.detcatscores.det_cat_fct_accum`` (``predb = pred > thr``,
``obsb = obs > thr``). Unlike pysteps, where a NaN simply compares False (a
NaN forecast becomes a "no" forecast), pixels that are NaN in either field,
or outside ``mask``, are left out of the table.

Tables reduce over the last two axes ``(y, x)``, so a ``(lead, H, W)`` pair
gives one table per lead time. Tables of several cases add up with ``+``;
scores are computed from the summed table (the pooled score of pysteps'
``det_cat_fct_accum``/``det_cat_fct_compute``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from dacast.verify._arrays import Array, paired


@dataclass(frozen=True, kw_only=True)
class Contingency:
    """A 2 x 2 contingency table; each count has shape ``(...)`` (float64 tensor).

    Attributes:
        hits: forecast yes, observed yes.
        misses: forecast no, observed yes.
        false_alarms: forecast yes, observed no.
        correct_negatives: forecast no, observed no.
    """

    hits: Tensor
    misses: Tensor
    false_alarms: Tensor
    correct_negatives: Tensor

    def __add__(self, other: Contingency) -> Contingency:
        return Contingency(
            hits=self.hits + other.hits,
            misses=self.misses + other.misses,
            false_alarms=self.false_alarms + other.false_alarms,
            correct_negatives=self.correct_negatives + other.correct_negatives,
        )

    @property
    def total(self) -> Tensor:
        """Number of verified pixels."""
        return self.hits + self.misses + self.false_alarms + self.correct_negatives


def contingency(forecast: Array, observed: Array, threshold: float, mask: Array | None = None) -> Contingency:
    """Count hits, misses, false alarms and correct negatives over the last two axes.

    Args:
        forecast: forecast field(s), shape ``(..., H, W)`` [e.g. mm/h]; NaN = missing.
        observed: observed field(s), same shape and units; NaN = missing.
        threshold: event threshold, same units; an event is ``value > threshold``.
        mask: optional boolean, broadcastable to ``(..., H, W)``; True = verify.

    Returns:
        The table, counts of shape ``(...)``.
    """
    f, o, valid = paired(forecast, observed, mask)
    fy = (f > threshold) & valid
    oy = (o > threshold) & valid
    fn = ~(f > threshold) & valid
    on = ~(o > threshold) & valid

    def count(x: Tensor) -> Tensor:
        return x.sum((-2, -1), dtype=torch.float64)

    return Contingency(
        hits=count(fy & oy), misses=count(fn & oy), false_alarms=count(fy & on), correct_negatives=count(fn & on)
    )


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    return torch.where(den > 0, num / den.clamp_min(1e-300), torch.full_like(num, float("nan")))


def csi(table: Contingency) -> Tensor:
    """Critical success index (threat score) ``H / (H + M + F)``; NaN when undefined."""
    return _ratio(table.hits, table.hits + table.misses + table.false_alarms)


def pod(table: Contingency) -> Tensor:
    """Probability of detection (hit rate) ``H / (H + M)``; NaN when undefined."""
    return _ratio(table.hits, table.hits + table.misses)


def far(table: Contingency) -> Tensor:
    """False alarm ratio ``F / (H + F)``; NaN when undefined."""
    return _ratio(table.false_alarms, table.hits + table.false_alarms)


def frequency_bias(table: Contingency) -> Tensor:
    """Frequency bias ``(H + F) / (H + M)``; NaN when undefined."""
    return _ratio(table.hits + table.false_alarms, table.hits + table.misses)
