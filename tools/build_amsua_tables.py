"""Tabulate dry-air and water-vapour absorption at the AMSU-A channels 6-8 for `dacast.obs.microwave` (needs ``rt``).

The absorption coefficients come from pyrtlib 1.2.0 (GPL-3; only its output is
stored, none of its code): ``RTEquation.clearsky_absorption(p, T, e, f)`` with the
Rosenkranz (2022) models as the reference operator configures them,
``init_absmdl("R22SD")`` (water vapour, N2 continuum) then ``O2AbsModel.model = "R22"``
(oxygen). Each channel is one monochromatic frequency (`AMSUA_CHANNELS`).

The grid is regular in ``ln p`` (hPa), ``ln T`` (K) and the vapour mole fraction
``w = e / p`` (so every node is a physical state, ``e < p``; ``w`` depends on the
specific humidity alone, ``w = q / (ε + (1 − ε) q)``). Stored per channel and node:
``ln_dry`` = ln(dry absorption / Np km-1), which is nearly linear in ``ln p`` and
``ln T``, and ``wet_per_e`` = wet absorption / e (Np km-1 hPa-1), which is linear
in ``e`` up to the small self-continuum term; at ``w = 0`` it is the limit
``e -> 0``, evaluated at ``w = W_LIMIT``. Trilinear interpolation of these two
quantities errs by at most 3e-4 (relative; 9e-5 on average) in the dry and 2.5e-3
in the (small) wet absorption (checked at 1500 random points per channel), which
keeps brightness temperatures within about 0.002 K of pyrtlib.

    pip install -e ".[rt]"
    python tools/build_amsua_tables.py            # -> src/dacast/obs/data/amsua_tables.npz (about 1 min)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
from pathlib import Path

import numpy as np

from dacast.obs.microwave import AMSUA_CHANNELS

OUT = Path(__file__).resolve().parents[1] / "src" / "dacast" / "obs" / "data" / "amsua_tables.npz"
#: Grid: (first node, last node, number of nodes) of ln p (hPa), ln T (K) and w = e / p.
LN_P = (math.log(5.0), math.log(1100.0), 109)
LN_T = (math.log(150.0), math.log(340.0), 48)
VAPOUR_FRACTION = (0.0, 0.1, 6)
#: Vapour mole fraction at which the e -> 0 limit of wet absorption / e is evaluated.
W_LIMIT = 1e-6


def configure_pyrtlib() -> str:
    """Select the reference's absorption models (R22SD, oxygen R22), load their line lists; return the version."""
    from pyrtlib.absorption_model import H2OAbsModel, LiqAbsModel, N2AbsModel, O2AbsModel
    from pyrtlib.version import __version__

    for model in (H2OAbsModel, O2AbsModel, N2AbsModel, LiqAbsModel):
        model.model = "R22SD"  # what TbCloudRTE.init_absmdl("R22SD") does
    O2AbsModel.model = "R22"  # there is no oxygen R22SD
    H2OAbsModel.set_ll()
    O2AbsModel.set_ll()
    return __version__


def absorption(p: np.ndarray, t: np.ndarray, e: np.ndarray, frequency: float) -> tuple[np.ndarray, np.ndarray]:
    """pyrtlib's clear-sky (wet, dry) absorption (Np/km) at points of any common shape (hPa, K, hPa)."""
    from pyrtlib.rt_equation import RTEquation

    p, t, e = (np.ascontiguousarray(a, dtype=np.float64).ravel() for a in np.broadcast_arrays(p, t, e))
    wet, dry = RTEquation.clearsky_absorption(p, t, e, frequency)
    return np.asarray(wet, dtype=np.float64), np.asarray(dry, dtype=np.float64)


def tabulate(frequency: float, ln_p: np.ndarray, ln_t: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(ln_dry, wet_per_e)`` of one frequency (GHz), each of shape ``(len(ln_p), len(ln_t), len(w))``."""
    pp, tt, ww = np.meshgrid(np.exp(ln_p), np.exp(ln_t), w, indexing="ij")
    wet, dry = absorption(pp, tt, ww * pp, frequency)
    wet, dry = wet.reshape(pp.shape), dry.reshape(pp.shape)
    if not (dry > 0).all():
        raise RuntimeError(f"non-positive dry absorption at {frequency} GHz")
    wet_per_e = np.empty_like(wet)
    wet_per_e[..., 1:] = wet[..., 1:] / (ww[..., 1:] * pp[..., 1:])
    p0, t0 = pp[..., 0], tt[..., 0]
    wet0, _ = absorption(p0, t0, W_LIMIT * p0, frequency)
    wet_per_e[..., 0] = wet0.reshape(p0.shape) / (W_LIMIT * p0)
    if not (wet_per_e > 0).all():
        raise RuntimeError(f"non-positive wet absorption at {frequency} GHz")
    return np.log(dry), wet_per_e


def main(argv: list[str] | None = None) -> int:
    """Compute the tables and write them with their provenance."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    try:
        version = configure_pyrtlib()
    except ImportError:
        print('error: pyrtlib is not installed; pip install -e ".[rt]"', file=sys.stderr)
        return 2
    ln_p, ln_t, w = (np.linspace(*axis) for axis in (LN_P, LN_T, VAPOUR_FRACTION))
    channels = sorted(AMSUA_CHANNELS)
    ln_dry, wet_per_e = [], []
    for ch in channels:
        print(f"channel {ch} ({AMSUA_CHANNELS[ch]} GHz): {ln_p.size * ln_t.size * w.size} nodes ...", flush=True)
        d, v = tabulate(AMSUA_CHANNELS[ch], ln_p, ln_t, w)
        ln_dry.append(d)
        wet_per_e.append(v)
    provenance = {
        "source": "pyrtlib RTEquation.clearsky_absorption (Rosenkranz 2022 absorption models)",
        "pyrtlib_version": version,
        "models": {"H2O": "R22SD", "N2": "R22SD", "O2": "R22"},
        "channels": {str(ch): AMSUA_CHANNELS[ch] for ch in channels},
        "grids": {
            "ln_p": {"first": LN_P[0], "last": LN_P[1], "n": LN_P[2], "units": "ln(hPa)"},
            "ln_t": {"first": LN_T[0], "last": LN_T[1], "n": LN_T[2], "units": "ln(K)"},
            "vapour_fraction": {
                "first": VAPOUR_FRACTION[0],
                "last": VAPOUR_FRACTION[1],
                "n": VAPOUR_FRACTION[2],
                "units": "1 (e / p)",
            },
        },
        "quantities": {
            "ln_dry": "ln of dry-air (O2 + N2) absorption in Np/km",
            "wet_per_e": f"water-vapour absorption / e in Np/km/hPa (w = 0: evaluated at w = {W_LIMIT})",
        },
        "interpolation": "trilinear in (ln p, ln T, e / p)",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python tools/build_amsua_tables.py",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.out,
        channels=np.array(channels, dtype=np.int64),
        frequency_ghz=np.array([AMSUA_CHANNELS[ch] for ch in channels], dtype=np.float64),
        ln_p=ln_p,
        ln_t=ln_t,
        vapour_fraction=w,
        ln_dry=np.array(ln_dry, dtype=np.float32),
        wet_per_e=np.array(wet_per_e, dtype=np.float32),
        provenance=np.array(json.dumps(provenance)),
    )
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
