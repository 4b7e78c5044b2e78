"""Generate ``amsua_pyrtlib_reference.npz``: pyrtlib's AMSU-A channel 6-8 brightness temperatures of fixed profiles.

Run by hand, never by the test suite (it needs the ``rt`` extra, pyrtlib 1.2.0)::

    pip install -e ".[rt]"
    python tests/regression/make_amsua_pyrtlib_reference.py

Reference implementation: pyrtlib 1.2.0 (Larosa et al. 2024, GPL-3),
``pyrtlib.tb_spectrum.TbCloudRTE.execute`` (the layer formulation of Schroeder &
Westwater 1991) with the Rosenkranz (2022) absorption models R22SD (water vapour,
N2) and R22 (oxygen), seen from the satellite, emissivity 1, plane-parallel, one
monochromatic frequency per channel (54.40, 54.94, 55.50 GHz); the column
``tbtotal``. The call is `dacast.obs.pyrtlib_reference.pyrtlib_brightness_temperature`
(heights by the hypsometric equation of `dacast.thermo`, relative humidity over
water by Goff-Gratch).

Profiles (20, on the 26 levels of the default `ColumnAtmosphere`, 1000..10 hPa):
columns of four model states on the attractor (``initial_state`` of seeds 0-3,
spin-up 5 time units), five columns each spread around the ring (tropics to the
poles), with an extra random temperature perturbation (smooth in the vertical,
a few K), a random humidity factor 0.5..1.5 (capped at saturation), one profile
dried to q = 0 above 500 hPa (the zero case of the layer integration) and one
saturated below 700 hPa; zenith angles 0..58 deg.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import torch

from dacast.models.column import ColumnAtmosphere
from dacast.obs.pyrtlib_reference import pyrtlib_brightness_temperature
from dacast.thermo import saturation_specific_humidity

OUT = Path(__file__).with_name("amsua_pyrtlib_reference.npz")
CHANNELS = (6, 7, 8)


def make_profiles() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(t (20, L) K, q (20, L) g/kg, p (L,) hPa, zenith (20,) deg)``, float64."""
    model = ColumnAtmosphere()
    p = model.pressure
    gen = torch.Generator().manual_seed(2024)
    ts, qs = [], []
    for seed in range(4):
        x = model.initial_state(torch.Generator().manual_seed(seed), spin_up=5.0)
        columns = (torch.arange(5) * 8 + 2 * seed) % model.n_columns
        t, q = model.profiles(x, columns)
        ts.append(t)
        qs.append(q)
    t, q = torch.cat(ts), torch.cat(qs)
    n, n_lev = t.shape
    lev = torch.arange(n_lev, dtype=torch.float64)
    kernel = torch.exp(-0.5 * ((lev[:, None] - lev[None]) / 3.0) ** 2)
    t = t + 2.0 * (torch.randn((n, n_lev), generator=gen, dtype=torch.float64) @ kernel) / kernel.norm(dim=0)
    q = q * (0.5 + torch.rand((n, 1), generator=gen, dtype=torch.float64))
    q[3, p < 500] = 0.0
    q[7, p >= 700] = saturation_specific_humidity(t[7, p >= 700], p[p >= 700])
    q = torch.minimum(q, saturation_specific_humidity(t, p))
    zenith = torch.linspace(0.0, 58.0, n, dtype=torch.float64)[torch.randperm(n, generator=gen)]
    return t, q, p, zenith


def main() -> None:
    """Compute pyrtlib's brightness temperatures of the profiles and write them with provenance."""
    from pyrtlib.version import __version__

    t, q, p, zenith = make_profiles()
    tb = pyrtlib_brightness_temperature(t, q, p, zenith, CHANNELS)
    meta = {
        "source": "pyrtlib TbCloudRTE(...).execute()['tbtotal'], satellite view, emissivity 1, no ray tracing",
        "pyrtlib_version": __version__,
        "models": {"H2O": "R22SD", "N2": "R22SD", "O2": "R22"},
        "frequencies_ghz": [54.40, 54.94, 55.50],
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python tests/regression/make_amsua_pyrtlib_reference.py",
        "units": {"t": "K", "q": "g/kg", "p": "hPa", "zenith_deg": "deg", "tb": "K"},
    }
    np.savez(
        OUT,
        t=t.numpy(),
        q=q.numpy(),
        p=p.numpy(),
        zenith_deg=zenith.numpy(),
        channels=np.array(CHANNELS),
        tb=tb,
        meta=np.array(json.dumps(meta)),
    )
    print(f"wrote {OUT}: {tb.shape[0]} profiles, Tb {tb.min():.2f}..{tb.max():.2f} K")


if __name__ == "__main__":
    main()
