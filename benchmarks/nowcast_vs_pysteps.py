"""dacast's nowcasts against pysteps' on the shared radar events.

For every event found under ``--data-root`` (default: the shared radar folder),
issue times every ``--interval`` minutes with enough past frames and a full
hour of observations after them; leads 5-60 min. Methods:

* ``persistence``
* ``pysteps-extrapolation``: Lucas-Kanade motion on dBR (3 frames) + semi-Lagrangian extrapolation
* ``pysteps-sprog``: S-PROG, 8 cascade levels, on the same motion
* ``dacast-extrapolation``: DIS optical flow (OpenCV) + semi-Lagrangian extrapolation
* ``dacast-trec``: TREC block matching (RIKEN's conventional motion) + the same extrapolation
* ``dacast-convlstm``: a trained ConvLSTM (``--checkpoint``; default: the nowcaster shipped with dacast), with
  its extrapolation input when it uses one; an ensemble network gives its central member (latent noise 0)
* ``dacast-convlstm-ens``: ``--members`` members of that ensemble network (`dacast.ml.predict_ensemble`)
* ``pysteps-steps``: the STEPS ensemble, ``--members`` members, on the same motion and cascade as S-PROG

Every method reads the same rain-rate arrays (``dacast.io``, which reproduces
pysteps' importers to 1e-13 mm/h) and is scored the same way
(``dacast.verify.score_nowcast``: CSI > threshold like pysteps' ``det_cat_fct``,
FSS >= threshold like pysteps' ``fss``, pixels valid at the issue time and at
the valid time). ``seconds`` is the wall time of motion estimation plus
forecast for one issue time. ``spectrum_err`` is the mean absolute log10 ratio
of the forecast's radially averaged power spectrum to the observed one
(wavelengths 4-64 km): larger means more blur or more noise.

``crps`` (mm/h) is `dacast.verify.crps_ensemble` of an ensemble, and the MAE (the CRPS of a one-member
ensemble) of a deterministic nowcast, so both compare; ensembles also get ``spread_skill`` (spread over
the RMSE of their mean: 1 when calibrated) and reliability counts of P(R > 1 mm/h) (``--reliability PNG``
draws the diagram). Their CSI/FSS/spectrum columns are left empty: they are not single forecasts.

An issue time is ``held_out`` when its input and target frames all lie in the
second half of its event: the ConvLSTM training example
(``examples/nowcast_train.yaml``) only sees first halves.

    pip install -e ".[bench]"
    python benchmarks/nowcast_vs_pysteps.py --json nowcast.json --plot skill.png
    python benchmarks/nowcast_vs_pysteps.py --events mch-201505151545 --methods persistence,dacast-extrapolation
    python benchmarks/nowcast_vs_pysteps.py --checkpoint runs/nowcast-train/best.pt --held-out-only
    python benchmarks/nowcast_vs_pysteps.py --held-out-only --interval 15 \
        --methods pysteps-sprog,pysteps-steps,dacast-convlstm,dacast-convlstm-ens --members 20 --reliability rel.png
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import sys
import time
import warnings
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from dacast.io import RadarReadError, default_radar_root, list_events, load_sequence
from dacast.nowcast import ExtrapolationConfig, OpticalFlowConfig, extrapolation_nowcast, persistence
from dacast.verify import (
    crps_ensemble,
    exceedance_probability,
    radial_power_spectrum,
    reliability,
    score_nowcast,
    spread_skill,
)

ALL_METHODS = (
    "persistence",
    "pysteps-extrapolation",
    "pysteps-sprog",
    "dacast-extrapolation",
    "dacast-trec",
    "dacast-convlstm",
    "dacast-convlstm-ens",
    "pysteps-steps",
)
ENSEMBLES = ("dacast-convlstm-ens", "pysteps-steps")
N_LEADS = 12
N_BINS = 10  # reliability bins of P(R > 1 mm/h)


@dataclass
class Row:
    event: str
    method: str
    issue_time: str
    held_out: bool
    lead_min: int
    csi_1: float
    csi_5: float
    fss_10km_1: float
    seconds: float
    spectrum_err: float
    crps: float = float("nan")
    spread_skill: float = float("nan")
    members: int = 1
    reliability_1: list[list[float]] | None = None  # [count, observed events] per probability bin


def event_id(source: str, start: np.datetime64) -> str:
    return f"{source}-{np.datetime_as_string(start, unit='m').replace('-', '').replace('T', '').replace(':', '')}"


def spectrum_error(forecast: np.ndarray, observed: np.ndarray) -> float:
    """Mean |log10(P_forecast / P_observed)| over wavelengths 4-64 pixels, NaN read as 0."""
    wf, pf = radial_power_spectrum(torch.from_numpy(np.nan_to_num(forecast)))
    _, po = radial_power_spectrum(torch.from_numpy(np.nan_to_num(observed)))
    wf, pf, po = wf.numpy(), pf.numpy(), po.numpy()
    band = (wf >= 1 / 64) & (wf <= 1 / 4) & (po > 0) & (pf > 0)
    return float(np.mean(np.abs(np.log10(pf[band] / po[band])))) if band.any() else float("nan")


class PystepsMethods:
    """pysteps 1.21's gallery recipe: dBR (threshold 0.1 mm/h, -15 dB below), LK on 3 frames."""

    def __init__(self) -> None:
        logging.getLogger("pysteps").setLevel(logging.WARNING)
        from pysteps import motion, nowcasts
        from pysteps.utils import transformation

        self.lk = motion.get_method("LK")
        self.extrapolate = nowcasts.get_method("extrapolation")
        self.sprog = nowcasts.get_method("sprog")
        self.db = transformation.dB_transform

    def _motion(self, past: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        db, _ = self.db(past.copy(), {"transform": None, "unit": "mm/h", "threshold": 0.1, "zerovalue": 0.0},
                        threshold=0.1, zerovalue=-15.0)
        db[~np.isfinite(db)] = -15.0
        return db, self.lk(db, verbose=False)

    def extrapolation(self, past: np.ndarray) -> np.ndarray:
        _, v = self._motion(past[-3:])
        return self.extrapolate(past[-1], v, N_LEADS)

    def sprog_nowcast(self, past: np.ndarray) -> np.ndarray:
        db, v = self._motion(past[-3:])
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # S-PROG prints its progress
            warnings.simplefilter("ignore")
            out = self.sprog(db, v, N_LEADS, n_cascade_levels=8, precip_thr=-10.0, decomp_method="fft",
                             bandpass_filter_method="gaussian", probmatching_method="mean")
        rain = 10.0 ** (out / 10.0)
        rain[out < -10.0] = 0.0
        return rain

    def steps_nowcast(self, past: np.ndarray, members: int, seed: int = 0) -> np.ndarray:
        """STEPS (pysteps' defaults: nonparametric noise, motion perturbations) with S-PROG's cascade."""
        from pysteps import nowcasts

        db, v = self._motion(past[-3:])
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # STEPS prints its progress
            warnings.simplefilter("ignore")
            out = nowcasts.get_method("steps")(
                db, v, N_LEADS, n_ens_members=members, n_cascade_levels=8, precip_thr=-10.0, kmperpixel=1.0,
                timestep=5, decomp_method="fft", bandpass_filter_method="gaussian", seed=seed,
            )
        rain = 10.0 ** (out / 10.0)
        rain[~(out >= -10.0)] = 0.0
        return rain


def make_methods(names: list[str], checkpoint: str | None, members: int = 20) -> tuple[dict, int]:
    """Callables ``past (T, H, W) mm/h -> (12, H, W) mm/h`` and the number of past frames they need."""
    methods: dict = {}
    n_past = 3
    pysteps = None
    if any(n.startswith("pysteps") for n in names):
        pysteps = PystepsMethods()
    dis_cfg = ExtrapolationConfig(motion=OpticalFlowConfig(method="dis"))
    trec_cfg = ExtrapolationConfig()

    def dacast_extrapolation(past: np.ndarray, cfg: ExtrapolationConfig = dis_cfg) -> np.ndarray:
        return extrapolation_nowcast(torch.from_numpy(past[-3:]), N_LEADS, cfg).numpy()

    for name in names:
        if name == "persistence":
            methods[name] = lambda past: persistence(torch.from_numpy(past[-1]), N_LEADS).numpy()
        elif name == "pysteps-extrapolation":
            methods[name] = pysteps.extrapolation
        elif name == "pysteps-sprog":
            methods[name] = pysteps.sprog_nowcast
        elif name == "pysteps-steps":
            methods[name] = lambda past: pysteps.steps_nowcast(past, members)
        elif name == "dacast-extrapolation":
            methods[name] = dacast_extrapolation
        elif name == "dacast-trec":
            methods[name] = lambda past: dacast_extrapolation(past, trec_cfg)
        elif name in ("dacast-convlstm", "dacast-convlstm-ens"):
            fn, t_in = convlstm_method(checkpoint, members if name == "dacast-convlstm-ens" else None)
            n_past = max(n_past, t_in)
            methods[name] = fn
    return methods, n_past


def convlstm_method(checkpoint: str | None, members: int | None) -> tuple:
    """``(past -> nowcast, t_in)`` of a trained nowcaster (None: the shipped one); with ``members``, an ensemble."""
    from dacast.ml import MultiResNowcaster, predict, predict_ensemble, shipped_nowcaster
    from dacast.workflow.nowcast.run import checkpoint_model
    from dacast.workflow.runtime import tune_malloc

    tune_malloc()  # as `dacast nowcast run` does: the network's full-size temporaries stay in the heap

    path = Path(checkpoint) if checkpoint else shipped_nowcaster()
    # The extrapolation input is made exactly as in training (settings saved beside the checkpoint).
    model, ext_cfg, _ = checkpoint_model(path)
    if members is not None and not (isinstance(model, MultiResNowcaster) and model.is_ensemble):
        raise ValueError(f"{path} is not an ensemble network: dacast-convlstm-ens needs one")
    t_in = model.config.t_in

    def convlstm(past: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(past[-t_in:])
        extra = None
        if ext_cfg is not None:
            extra = extrapolation_nowcast(torch.nan_to_num(x, nan=0.0), model.config.t_out, ext_cfg)
        if members is None:
            return predict(model, x, extra).numpy()[:N_LEADS]
        return predict_ensemble(model, x, extra, members=members, seed=0).numpy()[:, :N_LEADS]

    return convlstm, t_in


def ensemble_scores(ens: np.ndarray, observed: np.ndarray, mask: np.ndarray) -> list[tuple[float, float, list]]:
    """Per lead: CRPS, spread-skill ratio and reliability counts of P(R > 1 mm/h), on valid pixels."""
    out = []
    for lead in range(observed.shape[0]):
        valid = mask & np.isfinite(observed[lead])
        crps = float(crps_ensemble(ens[:, lead], observed[lead], valid))
        ratio = spread_skill(ens[:, lead], observed[lead], valid)[2]
        prob = exceedance_probability(ens[:, lead], 1.0)
        _, freq, count = reliability(prob, observed[lead], 1.0, valid, n_bins=N_BINS)
        events = torch.nan_to_num(freq) * count
        out.append((crps, ratio, [count.tolist(), events.tolist()]))
    return out


def run_event(source: str, start: np.datetime64, end: np.datetime64, root: Path, methods: dict, n_past: int,
              interval_min: int, held_out_only: bool, console: Console) -> list[Row]:
    rain, report = load_sequence(source, start, end, root=root)
    if not report.complete:
        console.print(f"[yellow]{event_id(source, start)}: {report.summary()}[/]")
    times = rain.time.values
    frames = rain.values.astype(np.float64)
    n = len(times)
    step = interval_min // 5
    rows: list[Row] = []
    for i in range(n_past - 1, n - N_LEADS, step):
        # A gap inside the window would misalign the leads: skip it and say so.
        window = times[i - n_past + 1 : i + N_LEADS + 1]
        if np.any(np.diff(window) != np.timedelta64(5, "m")):
            console.print(f"[yellow]skipping issue time {times[i]}: gap in the frames[/]")
            continue
        held_out = (i - n_past + 1) >= n // 2
        if held_out_only and not held_out:
            continue
        past, observed = frames[i - n_past + 1 : i + 1], frames[i + 1 : i + N_LEADS + 1]
        mask = np.isfinite(past[-1])
        for name, fn in methods.items():
            t0 = time.perf_counter()
            forecast = np.asarray(fn(past), dtype=np.float64)
            seconds = time.perf_counter() - t0
            common = {"event": event_id(source, start), "method": name, "issue_time": str(times[i])[:16],
                      "held_out": held_out, "seconds": seconds}
            if forecast.ndim == 4:  # (members, leads, y, x)
                nan = float("nan")
                for lead, (crps, ratio, rel) in enumerate(ensemble_scores(forecast, observed, mask)):
                    rows.append(Row(**common, lead_min=5 * (lead + 1), csi_1=nan, csi_5=nan, fss_10km_1=nan,
                                    spectrum_err=nan, crps=crps, spread_skill=ratio, members=forecast.shape[0],
                                    reliability_1=rel))
                continue
            scores = score_nowcast(forecast, observed, thresholds=(1.0, 5.0), scales_km=(10.0,), mask=mask)
            for lead in range(N_LEADS):
                rows.append(Row(
                    **common, lead_min=5 * (lead + 1),
                    csi_1=float(scores.csi[lead, 0]), csi_5=float(scores.csi[lead, 1]),
                    fss_10km_1=float(scores.fss[lead, 0, 0]),
                    spectrum_err=spectrum_error(np.where(mask, forecast[lead], 0.0),
                                                np.where(mask, observed[lead], 0.0)),
                    crps=float(scores.mae[lead]),  # the CRPS of a one-member ensemble
                ))
    return rows


def summarise(rows: list[Row], console: Console, title: str) -> None:
    groups: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        groups[r.method].append(r)
    table = Table(title=title)
    for col in ("method", "issues", "CSI 1 mm/h", "CSI 5 mm/h", "FSS 10 km", "CSI 1 +30", "CSI 1 +60",
                "spectrum err", "CRPS mm/h", "spread/skill", "seconds"):
        table.add_column(col, justify="right")
    for method, rs in groups.items():
        def mean(attr: str, lead: int | None = None, rs=rs) -> float:
            vals = [getattr(r, attr) for r in rs if lead is None or r.lead_min == lead]
            return float(np.nanmean(vals)) if vals else float("nan")

        issues = len({(r.event, r.issue_time) for r in rs})
        label = method + (f" ({rs[0].members})" if rs[0].members > 1 else "")
        cells = [f"{mean('csi_1'):.3f}", f"{mean('csi_5'):.3f}", f"{mean('fss_10km_1'):.3f}",
                 f"{mean('csi_1', 30):.3f}", f"{mean('csi_1', 60):.3f}", f"{mean('spectrum_err'):.3f}",
                 f"{mean('crps'):.3f}", f"{mean('spread_skill'):.2f}", f"{mean('seconds'):.2f}"]
        table.add_row(label, str(issues), *[("-" if c == "nan" else c) for c in cells])
    console.print(table)


def lead_gap(rows: list[Row], console: Console) -> None:
    """Mean CSI at 1 mm/h per lead for the extrapolation nowcasts, and dacast's largest gap to pysteps'."""
    candidates = ("pysteps-extrapolation", "dacast-extrapolation", "dacast-trec")
    names = [m for m in candidates if any(r.method == m for r in rows)]
    if "pysteps-extrapolation" not in names or len(names) < 2:
        return
    table = Table(title="CSI at 1 mm/h by lead (mean over issue times)")
    table.add_column("lead min", justify="right")
    for m in names:
        table.add_column(m, justify="right")
    per = {m: {} for m in names}
    for m in names:
        for lead in range(5, 5 * N_LEADS + 1, 5):
            per[m][lead] = float(np.nanmean([r.csi_1 for r in rows if r.method == m and r.lead_min == lead]))
    for lead in range(5, 5 * N_LEADS + 1, 5):
        table.add_row(str(lead), *[f"{per[m][lead]:.3f}" for m in names])
    console.print(table)
    for m in names[1:]:
        gap = max(abs(per[m][lead] - per["pysteps-extrapolation"][lead]) for lead in per[m])
        console.print(f"{m}: largest |CSI(1 mm/h) - pysteps-extrapolation| over leads = {gap:.3f}")


def plot(rows: list[Row], path: Path) -> None:
    """CSI (1, 5 mm/h) and FSS (1 mm/h, 10 km) vs lead time per method, averaged over issue times."""
    import xarray as xr

    from dacast.verify import plot_skill

    leads = np.arange(5, 5 * N_LEADS + 1, 5, dtype=float)
    results = {}
    for method in dict.fromkeys(r.method for r in rows if r.members == 1):
        rs = [r for r in rows if r.method == method]

        def mean(attr: str, lead: float, rs=rs) -> float:
            return float(np.nanmean([getattr(r, attr) for r in rs if r.lead_min == lead]))

        csi = np.array([[mean("csi_1", ld), mean("csi_5", ld)] for ld in leads])
        fss = np.array([[[mean("fss_10km_1", ld)], [np.nan]] for ld in leads])
        results[method] = xr.Dataset(
            {"csi": (("lead_time", "threshold"), csi), "fss": (("lead_time", "threshold", "scale"), fss)},
            coords={"lead_time": leads, "threshold": [1.0, 5.0], "scale": [10.0]},
        )
    plot_skill(results, path)


def plot_reliability(rows: list[Row], path: Path) -> None:
    """Reliability diagram of P(R > 1 mm/h) per ensemble method, pooled over issue times and leads."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.6, 4.4))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfect reliability")
    for method in dict.fromkeys(r.method for r in rows if r.reliability_1):
        counts = np.sum([r.reliability_1[0] for r in rows if r.method == method and r.reliability_1], axis=0)
        events = np.sum([r.reliability_1[1] for r in rows if r.method == method and r.reliability_1], axis=0)
        centres = (np.arange(N_BINS) + 0.5) / N_BINS
        used = counts > 0
        ax.plot(centres[used], events[used] / counts[used], marker="o", label=method)
    ax.set(xlabel="forecast probability of R > 1 mm/h", ylabel="observed frequency", xlim=(0, 1), ylim=(0, 1),
           title="reliability, leads 5-60 min")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def rows_from_json(path: Path) -> list[Row]:
    """Rows written by ``--json`` (to re-plot or re-summarise without re-running)."""
    return [Row(**r) for r in json.loads(Path(path).read_text())]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, help="radar folder laid out like the shared one")
    parser.add_argument("--events", help="comma-separated event ids (e.g. mch-201505151545); default: all found")
    parser.add_argument("--methods", default=",".join(m for m in ALL_METHODS if m != "dacast-convlstm"),
                        help=f"comma-separated, from {', '.join(ALL_METHODS)}")
    parser.add_argument("--checkpoint", help="nowcaster checkpoint (.pt or folder) for dacast-convlstm[-ens]; "
                        "default: the shipped one")
    parser.add_argument("--members", type=int, default=20, help="members of the ensemble methods")
    parser.add_argument("--reliability", metavar="PNG", help="draw the reliability diagram of the ensembles")
    parser.add_argument("--interval", type=int, default=30, help="minutes between issue times")
    parser.add_argument("--held-out-only", action="store_true", help="only issue times unseen in training")
    parser.add_argument("--json", metavar="PATH", help="write the rows as JSON")
    parser.add_argument("--plot", metavar="PNG", help="draw CSI and FSS vs lead time per method")
    args = parser.parse_args(argv)
    console = Console(width=150)

    def fail(msg: str) -> int:
        console.print(f"[bold red]error:[/] {msg}", highlight=False)
        return 2

    names = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in names if m not in ALL_METHODS]
    if unknown:
        return fail(f"unknown method(s) {', '.join(unknown)}; choose from {', '.join(ALL_METHODS)}")
    if not 2 <= args.members <= 100:
        return fail("--members must be in 2..100")
    if args.interval <= 0 or args.interval % 5:
        return fail("--interval must be a positive multiple of 5 minutes")
    try:
        root = args.data_root or default_radar_root()
        events = list_events(root)
    except (FileNotFoundError, RadarReadError) as err:
        return fail(str(err))
    if args.events:
        wanted = {e.strip() for e in args.events.split(",")}
        events = tuple(e for e in events if event_id(e.source, e.start) in wanted)
        missing = wanted - {event_id(e.source, e.start) for e in events}
        if missing:
            return fail(f"no such event(s) under {root}: {', '.join(sorted(missing))}")
    if not events:
        return fail(f"no radar events found under {root}")
    try:
        methods, n_past = make_methods(names, args.checkpoint, args.members)
    except ImportError as err:
        return fail(f"{err}; install the bench extra: pip install -e '.[bench]'")
    except (OSError, ValueError, RuntimeError) as err:
        return fail(f"cannot load the nowcaster: {err}")
    rows: list[Row] = []
    for ev in events:
        console.log(f"{event_id(ev.source, ev.start)}: {ev.n_frames} frames")
        rows += run_event(ev.source, ev.start, ev.end, Path(ev.root), methods, n_past, args.interval,
                          args.held_out_only, console)
        summarise([r for r in rows if r.event == event_id(ev.source, ev.start)], console,
                  f"{event_id(ev.source, ev.start)} (mean over issue times and leads 5-60 min)")
    summarise(rows, console, "all events")
    lead_gap(rows, console)
    held = [r for r in rows if r.held_out]
    if held and not args.held_out_only:
        summarise(held, console, "held-out issue times only")
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(r) for r in rows], indent=1))
    if args.plot:
        plot(rows, Path(args.plot))
    if args.reliability:
        plot_reliability(rows, Path(args.reliability))
    return 0


if __name__ == "__main__":
    sys.exit(main())
