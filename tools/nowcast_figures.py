"""Figures of the shipped (or any) multi-resolution nowcaster at one issue time, for docs/nowcasting.md.

    python tools/nowcast_figures.py --source mch --start 2015-05-15T17:45 --lead 30 --out docs

Writes ``nowcast_multires.png`` (the observed rain pooled to each output resolution, over the
network's output at that resolution, at one lead), ``nowcast_members.png`` (four ensemble members,
P(R > 1 mm/h) and the observation) and ``nowcast_spectra.png`` (radially averaged power spectra at
that lead: observed, S-PROG, DIS extrapolation and the network's central member).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure

from dacast.io import load_sequence
from dacast.ml import load_nowcaster, predict, predict_ensemble, shipped_nowcaster
from dacast.nowcast import extrapolation_nowcast
from dacast.verify import radial_power_spectrum
from dacast.workflow.nowcast.train import extrapolation_config, read_training_sidecar

LEVELS = [0.1, 0.5, 1, 2, 5, 10, 20, 50, 100]
CMAP = ListedColormap(["#d0e8ff", "#90c0f0", "#4090e0", "#20b040", "#f0e020", "#f09020", "#e02020", "#a01080"])
NORM = BoundaryNorm(LEVELS, CMAP.N)


def pooled(rain: np.ndarray, factor: int) -> np.ndarray:
    """Areal mean of ``rain`` over ``factor × factor`` blocks (NaN where any pixel is NaN), cropped to whole blocks."""
    h, w = (rain.shape[0] // factor) * factor, (rain.shape[1] // factor) * factor
    return rain[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3))


def show(ax, field: np.ndarray, title: str) -> None:  # type: ignore[no-untyped-def]
    ax.imshow(np.ma.masked_less(np.nan_to_num(field, nan=-1.0), 0.1), cmap=CMAP, norm=NORM, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def sprog(past: np.ndarray, n_leads: int) -> np.ndarray:
    """pysteps' S-PROG as in benchmarks/nowcast_vs_pysteps.py (LK motion on dBR, 8 cascade levels)."""
    from pysteps import motion, nowcasts
    from pysteps.utils import transformation

    db, _ = transformation.dB_transform(
        past[-3:].copy(),
        {"transform": None, "unit": "mm/h", "threshold": 0.1, "zerovalue": 0.0},
        threshold=0.1,
        zerovalue=-15.0,
    )
    db[~np.isfinite(db)] = -15.0
    v = motion.get_method("LK")(db, verbose=False)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        out = nowcasts.get_method("sprog")(
            db,
            v,
            n_leads,
            n_cascade_levels=8,
            precip_thr=-10.0,
            decomp_method="fft",
            bandpass_filter_method="gaussian",
            probmatching_method="mean",
        )
    rain = 10.0 ** (out / 10.0)
    rain[out < -10.0] = 0.0
    return rain


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="mch")
    parser.add_argument("--start", default="2015-05-15T17:45")
    parser.add_argument("--lead", type=int, default=30, help="minutes")
    parser.add_argument("--checkpoint", type=Path, help="default: the shipped nowcaster")
    parser.add_argument("--out", type=Path, default=Path("docs"))
    args = parser.parse_args(argv)
    path = args.checkpoint or shipped_nowcaster()
    model = load_nowcaster(path)
    cfg = model.config
    t0 = np.datetime64(args.start)
    rain, _ = load_sequence(args.source, t0 - np.timedelta64(5 * (cfg.t_in - 1), "m"), t0 + np.timedelta64(60, "m"))
    frames = rain.values.astype(np.float64)
    past, observed = frames[: cfg.t_in], frames[cfg.t_in :]
    k = args.lead // 5 - 1
    x = torch.from_numpy(past)
    ext_cfg = extrapolation_config(read_training_sidecar(path), "checkpoint")
    extra = extrapolation_nowcast(torch.nan_to_num(x, nan=0.0), cfg.t_out, ext_cfg)
    valid = np.isfinite(past[-1])
    obs = np.where(valid, observed[k], np.nan)
    n_out = getattr(model, "n_outputs", 1)
    args.out.mkdir(parents=True, exist_ok=True)
    when = f"{args.source} {args.start} UTC, +{args.lead} min"

    fig = Figure(figsize=(3.2 * n_out, 6.2))
    for j in range(n_out):
        fc = predict(model, x, extra, resolution=j, device="cpu")[k].numpy()
        f = 2**j
        show(fig.add_subplot(2, n_out, 1 + j), pooled(obs, f), f"observed, {f} km areal mean")
        h, w = pooled(obs, f).shape
        show(
            fig.add_subplot(2, n_out, 1 + n_out + j),
            np.where(np.isnan(pooled(obs, f)), np.nan, fc[:h, :w]),
            f"output {j}: 1/{f} resolution",
        )
    fig.suptitle(f"multi-resolution outputs (central member), {when}", fontsize=10)
    fig.savefig(args.out / "nowcast_multires.png", dpi=90, bbox_inches="tight")

    if getattr(model, "is_ensemble", False):
        ens = predict_ensemble(model, x, extra, members=20, seed=0, device="cpu").numpy()[:, k]
        fig = Figure(figsize=(12, 6.2))
        for i in range(4):
            show(fig.add_subplot(2, 3, 1 + i), np.where(valid, ens[i], np.nan), f"member {i}")
        prob = np.where(valid, (ens > 1.0).mean(0), np.nan)
        ax = fig.add_subplot(2, 3, 5)
        im = ax.imshow(prob, cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title("P(R > 1 mm/h), 20 members", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, shrink=0.8)
        show(fig.add_subplot(2, 3, 6), obs, "observed")
        fig.suptitle(f"ensemble nowcast, {when} (rain rate, mm/h)", fontsize=10)
        fig.savefig(args.out / "nowcast_members.png", dpi=80, bbox_inches="tight")

    fields = {
        "observed": obs,
        "pysteps S-PROG": sprog(past, cfg.t_out)[k],
        "dacast DIS extrapolation": extra[k].numpy(),
        "dacast multires (central member)": predict(model, x, extra, device="cpu")[k].numpy(),
    }
    fig = Figure(figsize=(5.2, 4.2))
    ax = fig.add_subplot()
    for name, field in fields.items():
        wn, p = radial_power_spectrum(torch.from_numpy(np.where(valid, np.nan_to_num(field), 0.0)))
        keep = (wn > 0) & (wn <= 0.5)
        ax.loglog(1 / wn[keep].numpy(), p[keep].numpy(), label=name, lw=1.5 if name == "observed" else 1.0)
    ax.invert_xaxis()
    ax.axvspan(4, 64, color="0.92", zorder=0, label="band of spectrum_err")
    ax.set(xlabel="wavelength (km)", ylabel="power ((mm/h)² )", title=f"power spectra, {when}")
    ax.legend(fontsize=7)
    fig.savefig(args.out / "nowcast_spectra.png", dpi=100, bbox_inches="tight")
    print(f"wrote figures to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
