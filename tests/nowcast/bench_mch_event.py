"""Timings and skill on MeteoSwiss 2015-05-15, t0 16:30 UTC (prints; nothing asserted).

    python tests/nowcast/bench_mch_event.py [--repeat 5]

Reference (shared/data/radar/README.md, pysteps 1.21.5, 2-core machine): LK
~0.95 s, 12-step extrapolation ~0.95 s; CSI at 1 mm/h +30 min: LK + SL 0.42,
persistence 0.37.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from dacast.io import default_radar_root, read_mch_gif
from dacast.nowcast import (
    ExtrapolationConfig,
    OpticalFlowConfig,
    estimate_motion,
    extrapolation_nowcast,
    optical_flow,
    persistence,
    to_dbr,
    trec,
)
from dacast.verify import score_nowcast


def read_mch(hhmm: str) -> np.ndarray:
    """MeteoSwiss 2015-05-15 rain rate [mm/h] at ``hhmm`` UTC, (640, 710), NaN = no data."""
    path = Path(default_radar_root()) / "mch" / "20150515" / f"AQC15135{hhmm}F_00005.801.gif"
    return read_mch_gif(path).values.astype(np.float64)


def timed(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up
    runs = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    later = [f"{(16 * 60 + 30 + 5 * i) // 60}{(30 + 5 * i) % 60:02d}" for i in range(1, 13)]
    rain = torch.from_numpy(np.stack([read_mch(t) for t in ("1620", "1625", "1630")])).float()
    observed = torch.from_numpy(np.stack([read_mch(t) for t in later])).float()
    db = to_dbr(rain)
    print(f"grid {tuple(rain.shape[1:])}, torch threads {torch.get_num_threads()}, median of {args.repeat}")
    print(f"TREC (3 frames, 2 pairs)    {timed(lambda: trec(db), args.repeat):6.3f} s")
    print(f"TREC (last pair)            {timed(lambda: trec(db[-2:]), args.repeat):6.3f} s")
    for m in ("farneback", "dis"):
        print(f"optical flow {m:10s} (3) {timed(lambda m=m: optical_flow(db, method=m), args.repeat):6.3f} s")
    motion = estimate_motion(rain, ExtrapolationConfig())
    seconds = timed(lambda: extrapolation_nowcast(rain, 12, motion=motion), args.repeat)
    print(f"extrapolation, 12 leads     {seconds:6.3f} s")
    valid_t0 = torch.isfinite(rain[-1])
    configs = {
        "trec": ExtrapolationConfig(),
        "farneback": ExtrapolationConfig(motion=OpticalFlowConfig(method="farneback")),
        "dis": ExtrapolationConfig(motion=OpticalFlowConfig(method="dis")),
    }
    forecasts = {name: extrapolation_nowcast(rain, 12, c).nan_to_num(nan=0.0) for name, c in configs.items()}
    forecasts["persistence"] = persistence(rain[-1], 12)
    print("CSI 1 mm/h / CSI 5 mm/h / FSS 1 mm/h 10 km at +15 / +30 / +60 min (pixels valid at t0 and valid time)")
    for name, fc in forecasts.items():
        ds = score_nowcast(fc, observed, mask=valid_t0)
        cells = []
        for lead in (15.0, 30.0, 60.0):
            s = ds.sel(lead_time=lead)
            cells.append(
                f"{float(s.csi.sel(threshold=1.0)):.3f} / {float(s.csi.sel(threshold=5.0)):.3f} / "
                f"{float(s.fss.sel(threshold=1.0, scale=10.0)):.3f}"
            )
        print(f"  {name:12s} " + " | ".join(cells))


if __name__ == "__main__":
    main()
