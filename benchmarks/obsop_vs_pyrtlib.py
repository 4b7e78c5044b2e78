"""dacast's AMSU-A operator (channels 6-8) against pyrtlib on the same random profiles: accuracy and speed.

The profiles are columns of `ColumnAtmosphere` states on the attractor (a few
seeded states, random columns) with an extra smooth random temperature
perturbation (a few K), a random humidity factor (capped at saturation) and a
random zenith angle 0..58 deg. pyrtlib 1.2.0 (`dacast.obs.pyrtlib_reference`, the
reference configuration) runs them one by one; dacast's `brightness_temperature`
runs them as one batch (best of a few repeats after a warm-up). The table gives
per method the time per profile, the speed-up over pyrtlib and, per channel, the
largest and the RMS absolute difference from pyrtlib (K).

    pip install -e ".[rt]"
    python benchmarks/obsop_vs_pyrtlib.py                      # 1000 profiles (pyrtlib about 1.5 min)
    python benchmarks/obsop_vs_pyrtlib.py --profiles 200 --json out.json
    python benchmarks/obsop_vs_pyrtlib.py --ml runs/amsua/ml-truth --ml runs/amsua/ml --no-perturb

``--ml FOLDER`` adds a learned operator saved by ``dacast obsop run`` (one row
per folder; it reads the column's latitude and the scan angle of its zenith
angle too). ``--no-perturb`` draws the profiles from the model's attractor only
(the distribution the learned operators were trained on).

Another operator joins the table as one more entry of `METHODS`: a function of the
profiles returning its predictions ``(n, C)`` (K) and its seconds per profile.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from dacast.ml.obsop import radiance_features
from dacast.ml.obsop_train import load_radiance_network
from dacast.models.column import ColumnAtmosphere
from dacast.obs.microwave import brightness_temperature
from dacast.obs.satellite import AMSUA_ALTITUDE_KM, AMSUA_MAX_SCAN, EARTH_RADIUS_KM, zenith_angle
from dacast.thermo import saturation_specific_humidity

CHANNELS = (6, 7, 8)
#: Largest zenith angle drawn: AMSU-A's edge of scan (48.33 deg from 833 km).
MAX_ZENITH = float(zenith_angle(torch.tensor(AMSUA_MAX_SCAN, dtype=torch.float64)))
#: Model states the profiles are drawn from.
N_STATES = 8


@dataclass(frozen=True)
class Profiles:
    """``t (n, L)`` K, ``q (n, L)`` g/kg, ``p (L,)`` hPa, ``zenith_deg (n,)``, ``lat_deg (n,)``, float64."""

    t: torch.Tensor
    q: torch.Tensor
    p: torch.Tensor
    zenith_deg: torch.Tensor
    lat_deg: torch.Tensor


@dataclass
class Row:
    method: str
    seconds_per_profile: float
    speedup: float | None = None
    max_abs_k: dict[int, float] = field(default_factory=dict)
    rms_k: dict[int, float] = field(default_factory=dict)


def make_profiles(n: int, seed: int = 0, perturb: bool = True) -> Profiles:
    """``n`` random (``perturb``: perturbed) profiles on the default `ColumnAtmosphere` levels (seeded)."""
    model = ColumnAtmosphere()
    gen = torch.Generator().manual_seed(seed)
    states = torch.stack(
        [model.initial_state(torch.Generator().manual_seed(seed * 100 + s), spin_up=5.0) for s in range(N_STATES)]
    )
    which = torch.randint(N_STATES, (n,), generator=gen)
    columns = torch.randint(model.n_columns, (n,), generator=gen)
    t_all, q_all = model.split(states)  # (S, L, N)
    t, q = t_all[which, :, columns], q_all[which, :, columns]  # (n, L)
    lev = torch.arange(model.n_levels, dtype=torch.float64)
    kernel = torch.exp(-0.5 * ((lev[:, None] - lev[None]) / 3.0) ** 2)
    noise = torch.randn((n, model.n_levels), generator=gen, dtype=torch.float64) @ kernel / kernel.norm(dim=0)
    offset = torch.randn((n, 1), generator=gen, dtype=torch.float64)
    factor = torch.exp(0.3 * torch.randn((n, 1), generator=gen, dtype=torch.float64))
    if perturb:
        t = t + 2.0 * noise + offset
        q = torch.minimum(q * factor, saturation_specific_humidity(t, model.pressure))
    zenith = MAX_ZENITH * torch.rand(n, generator=gen, dtype=torch.float64)
    return Profiles(t=t, q=q, p=model.pressure.clone(), zenith_deg=zenith, lat_deg=model.latitude[columns])


def run_pyrtlib(profiles: Profiles) -> tuple[np.ndarray, float]:
    """pyrtlib, one profile after the other: ``(tb (n, C) K, seconds per profile)``."""
    from dacast.obs.pyrtlib_reference import pyrtlib_brightness_temperature

    t0 = time.perf_counter()
    tb = pyrtlib_brightness_temperature(profiles.t, profiles.q, profiles.p, profiles.zenith_deg, CHANNELS)
    return tb, (time.perf_counter() - t0) / profiles.t.shape[0]


def best_of(once: Callable[[], torch.Tensor], n_profiles: int, repeats: int) -> tuple[np.ndarray, float]:
    """``once()`` after a warm-up, timed ``repeats`` times: its result ``(n, C)`` and the best seconds per profile."""
    tb = once()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        tb = once()
        best = min(best, time.perf_counter() - t0)
    return tb.double().cpu().numpy(), best / n_profiles


def dacast_method(device: str, dtype: torch.dtype, repeats: int = 5) -> Callable[[Profiles], tuple[np.ndarray, float]]:
    """dacast's batched operator on ``device`` in ``dtype``: best of ``repeats`` runs after a warm-up."""

    def run(profiles: Profiles) -> tuple[np.ndarray, float]:
        t, q, p, zen = (getattr(profiles, k).to(device=device, dtype=dtype) for k in ("t", "q", "p", "zenith_deg"))

        def once() -> torch.Tensor:
            tb = brightness_temperature(t, q, p, zen, channels=CHANNELS)
            if device != "cpu":
                torch.cuda.synchronize()
            return tb

        return best_of(once, t.shape[0], repeats)

    return run


def learned_method(folder: str, repeats: int = 5) -> Callable[[Profiles], tuple[np.ndarray, float]]:
    """A learned operator saved by ``dacast obsop run`` (float32, CPU, batched): best of ``repeats`` runs."""
    network, _ = load_radiance_network(folder, channels=CHANNELS)

    def run(profiles: Profiles) -> tuple[np.ndarray, float]:
        ratio = EARTH_RADIUS_KM / (EARTH_RADIUS_KM + AMSUA_ALTITUDE_KM)
        scan = torch.rad2deg(torch.asin(ratio * torch.sin(torch.deg2rad(profiles.zenith_deg))))

        def once() -> torch.Tensor:
            with torch.no_grad():
                geometry = (scan, profiles.zenith_deg, profiles.lat_deg)
                feats = radiance_features(profiles.t, profiles.q, *geometry, network.humidity_levels)
                return network(feats.float())

        return best_of(once, profiles.t.shape[0], repeats)

    return run


def methods(learned: list[str]) -> dict[str, Callable[[Profiles], tuple[np.ndarray, float]]]:
    """Name -> method compared with pyrtlib: dacast's physical operator, then each learned one."""
    out = {"dacast": dacast_method("cpu", torch.float64), "dacast f32": dacast_method("cpu", torch.float32)}
    if torch.cuda.is_available():
        out["dacast cuda f32"] = dacast_method("cuda", torch.float32)
    for folder in learned:
        out[f"learned {folder}"] = learned_method(folder)
    return out


def compare(reference: np.ndarray, ref_seconds: float, name: str, tb: np.ndarray, seconds: float) -> Row:
    """One table row: accuracy per channel against ``reference`` ``(n, C)`` and speed-up."""
    diff = np.abs(tb - reference)
    return Row(
        method=name,
        seconds_per_profile=seconds,
        speedup=ref_seconds / seconds,
        max_abs_k={ch: float(diff[:, i].max()) for i, ch in enumerate(CHANNELS)},
        rms_k={ch: float(np.sqrt((diff[:, i] ** 2).mean())) for i, ch in enumerate(CHANNELS)},
    )


def render(rows: list[Row], n: int, console: Console) -> None:
    title = (
        f"AMSU-A ch 6-8 vs pyrtlib 1.2.0, {n} profiles — {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    table = Table(title=title)
    for col in ["method", "s / profile", "speed-up"] + [f"ch{c} {s} K" for c in CHANNELS for s in ("max", "RMS")]:
        table.add_column(col, justify="right")
    for r in rows:
        cells = [r.method, f"{r.seconds_per_profile:.2e}", "-" if r.speedup is None else f"{r.speedup:,.0f}"]
        for c in CHANNELS:
            cells += [f"{r.max_abs_k[c]:.4f}", f"{r.rms_k[c]:.4f}"] if r.max_abs_k else ["-", "-"]
        table.add_row(*cells)
    console.print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", type=int, default=1000, help="number of profiles (default 1000)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", metavar="PATH", help="write the rows as JSON")
    parser.add_argument("--ml", action="append", default=[], metavar="FOLDER", help="a learned operator's folder")
    parser.add_argument("--no-perturb", action="store_true", help="profiles from the attractor only")
    args = parser.parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 140)  # the whole table in a log file too
    profiles = make_profiles(args.profiles, args.seed, perturb=not args.no_perturb)
    console.log(f"{args.profiles} profiles; pyrtlib ...")
    reference, ref_seconds = run_pyrtlib(profiles)
    rows = [Row(method="pyrtlib", seconds_per_profile=ref_seconds)]
    for name, method in methods(args.ml).items():
        console.log(f"{name} ...")
        tb, seconds = method(profiles)
        rows.append(compare(reference, ref_seconds, name, tb, seconds))
    render(rows, args.profiles, console)
    if args.json:
        meta = {
            "profiles": args.profiles,
            "seed": args.seed,
            "threads": torch.get_num_threads(),
            "perturb": not args.no_perturb,
        }
        with open(args.json, "w") as fh:
            json.dump({**meta, "rows": [asdict(r) for r in rows]}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
