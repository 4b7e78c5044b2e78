"""Live verification: every earlier forecast is scored against each observation as it arrives.

Each issue keeps, bit-packed, where its forecast frames exceed the threshold, and where
the observation at its issue time did (the persistence forecast). When an observation
valid at ``t`` arrives, every kept issue with a frame valid at ``t`` adds its contingency
counts (CSI) and fractions-skill-score sums (FSS, Roberts & Lean 2008, pooled over pairs)
to the totals of that lead time; issues whose last frame is older than ``t`` are dropped.
Memory: ``frames x ny x nx / 8`` bytes per live issue.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import torch

from dacast.verify.spatial import fractions
from dacast.workflow.figures import new_figure

_SUMS = ("hits", "misses", "false_alarms", "fss_num", "fss_den", "pairs")


@dataclass
class _Issue:
    time: datetime
    leads: list[float]  # minutes
    frames: np.ndarray  # packed bits, (n_frames, ceil(ny*nx/8))
    persistence: np.ndarray  # packed bits of the observation at issue time
    persistence_valid: np.ndarray  # packed bits: where it was observed


@dataclass
class Verifier:
    """Running CSI and FSS per lead for the forecast and persistence.

    Attributes:
        shape: ``(ny, nx)`` of every field.
        lead_minutes: the lead times verified (minutes), lead 0 included.
        scale: FSS window edge (cells, >= 1).
    """

    shape: tuple[int, int]
    lead_minutes: list[float]
    scale: int
    issues: list[_Issue] = field(default_factory=list)
    totals: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.totals:
            self.totals = {
                f"{m}_{k}": np.zeros(len(self.lead_minutes)) for m in ("forecast", "persistence") for k in _SUMS
            }

    def add_issue(self, t: datetime, exceed: np.ndarray, observed: np.ndarray | None) -> None:
        """Keep an issue: ``exceed`` ``(n_frames, ny, nx)`` bool (forecast above threshold at ``lead_minutes``);
        ``observed`` ``(ny, nx)`` float, the observation at ``t`` already thresholded to 1/0, NaN = not observed
        (``None``: no observation, no persistence forecast)."""
        if exceed.shape != (len(self.lead_minutes), *self.shape):
            raise ValueError(f"exceed must have shape {(len(self.lead_minutes), *self.shape)}, got {exceed.shape}")
        obs = np.zeros(self.shape) if observed is None else np.nan_to_num(observed)
        valid = np.zeros(self.shape, bool) if observed is None else ~np.isnan(observed)
        self.issues.append(
            _Issue(
                time=t,
                leads=list(self.lead_minutes),
                frames=np.packbits(exceed.reshape(len(self.lead_minutes), -1), axis=1),
                persistence=np.packbits(obs.reshape(-1) > 0.5),
                persistence_valid=np.packbits(valid.reshape(-1)),
            )
        )

    def observe(self, t: datetime, observed: np.ndarray) -> int:
        """Score every kept issue with a frame valid at ``t`` against ``observed`` ``(ny, nx)`` (1/0, NaN = none).

        Returns:
            The number of (issue, lead) pairs scored.
        """
        n = self.shape[0] * self.shape[1]
        valid = ~np.isnan(observed)
        obs = np.nan_to_num(observed) > 0.5
        po = self._fractions(obs & valid)
        scored = 0
        keep = []
        for issue in self.issues:
            last = issue.time + timedelta(minutes=issue.leads[-1])
            if last < t:
                continue
            keep.append(issue)
            lead = round((t - issue.time).total_seconds())  # whole seconds: no float equality of minutes
            seconds = [round(m * 60.0) for m in issue.leads]
            if lead <= 0 or lead not in seconds:
                continue
            j = seconds.index(lead)
            fc = np.unpackbits(issue.frames[j], count=n).reshape(self.shape).astype(bool)
            self._add("forecast", j, fc & valid, obs, valid, po)
            pv = np.unpackbits(issue.persistence_valid, count=n).reshape(self.shape).astype(bool)
            if pv.any():
                persist = np.unpackbits(issue.persistence, count=n).reshape(self.shape).astype(bool)
                self._add("persistence", j, persist & valid & pv, obs & pv, valid & pv, None)
            scored += 1
        self.issues = keep
        return scored

    def _fractions(self, binary: np.ndarray) -> np.ndarray:
        # float32 is exact here: the window sums are integer counts far below 2^24
        return fractions(torch.from_numpy(binary.astype(np.float32)), self.scale).numpy().astype(np.float64)

    def _add(
        self, name: str, j: int, fc: np.ndarray, obs: np.ndarray, valid: np.ndarray, po: np.ndarray | None
    ) -> None:
        obs = obs & valid
        t = self.totals
        t[f"{name}_hits"][j] += np.count_nonzero(fc & obs)
        t[f"{name}_misses"][j] += np.count_nonzero(~fc & obs)
        t[f"{name}_false_alarms"][j] += np.count_nonzero(fc & ~obs & valid)
        pf = self._fractions(fc)
        po = self._fractions(obs) if po is None else po
        t[f"{name}_fss_num"][j] += float(((pf - po) ** 2).sum())
        t[f"{name}_fss_den"][j] += float((pf**2).sum() + (po**2).sum())
        t[f"{name}_pairs"][j] += 1

    def scores(self) -> dict[str, Any]:
        """``{"lead_minutes", "csi": {forecast, persistence}, "fss": {...}, "pairs"}``; ``None`` where unscored."""
        out: dict[str, Any] = {"lead_minutes": list(self.lead_minutes), "csi": {}, "fss": {}}
        for name in ("forecast", "persistence"):
            t = {k: self.totals[f"{name}_{k}"] for k in _SUMS}
            den = t["hits"] + t["misses"] + t["false_alarms"]
            out["csi"][name] = [float(h / d) if d > 0 else None for h, d in zip(t["hits"], den, strict=True)]
            out["fss"][name] = [
                float(1 - a / b) if b > 0 else None for a, b in zip(t["fss_num"], t["fss_den"], strict=True)
            ]
        out["pairs"] = [int(p) for p in self.totals["forecast_pairs"]]
        return out

    def state_dict(self) -> dict[str, Any]:
        """The verifier as tensors and plain data (for a ``weights_only`` checkpoint)."""
        return {
            "settings": self._settings(),
            "totals": {k: torch.from_numpy(v.copy()) for k, v in self.totals.items()},
            "issues": [
                {
                    "time": i.time.isoformat(),
                    "leads": i.leads,
                    "frames": torch.from_numpy(i.frames.copy()),
                    "persistence": torch.from_numpy(i.persistence.copy()),
                    "persistence_valid": torch.from_numpy(i.persistence_valid.copy()),
                }
                for i in self.issues
            ],
        }

    def _settings(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "lead_minutes": list(self.lead_minutes), "scale": self.scale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore `state_dict`'s content; `ValueError` when it was made with another grid, leads or scale."""
        if state.get("settings") != self._settings():
            raise ValueError(f"verification state of other settings ({state.get('settings')}, now {self._settings()})")
        self.totals = {k: v.numpy().copy() for k, v in state["totals"].items()}
        self.issues = [
            _Issue(
                time=datetime.fromisoformat(i["time"]),
                leads=list(i["leads"]),
                frames=i["frames"].numpy().copy(),
                persistence=i["persistence"].numpy().copy(),
                persistence_valid=i["persistence_valid"].numpy().copy(),
            )
            for i in state["issues"]
        ]


_LINES = (("forecast", "#1f63c8"), ("convlstm", "#e8552a"), ("persistence", "#888888"))


def skill_png(scores: dict[str, Any], *, title: str, labels: dict[str, str] | None = None) -> bytes:
    """A PNG of CSI and FSS against lead time (`Verifier.scores`): the forecast, the ConvLSTM when scored
    (``convlstm``), persistence; ``labels`` renames them in the legend."""
    fig = new_figure(figsize=(7.0, 3.0))
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.17, top=0.86, wspace=0.25)
    leads = scores["lead_minutes"]
    for k, key in enumerate(("csi", "fss")):
        ax = fig.add_subplot(1, 2, k + 1)
        for name, colour in _LINES:
            if name not in scores[key]:
                continue
            values = [np.nan if v is None else v for v in scores[key][name]]
            ax.plot(leads, values, marker=".", color=colour, label=(labels or {}).get(name, name))
        ax.set_xlabel("lead time (min)")
        ax.set_ylabel(key.upper())
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        if k == 0:
            ax.legend(loc="upper right", fontsize=8)
    fig.suptitle(title, fontsize=9)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()


__all__ = ["Verifier", "skill_png"]
