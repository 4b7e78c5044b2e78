"""pyrtlib's brightness temperatures for the profiles of `dacast.obs.microwave`: the reference it is tested against.

Needs the optional ``rt`` extra (``pip install -e ".[rt]"``; pyrtlib 1.2.0, GPL-3),
imported only when called. The configuration (what "pyrtlib" means in dacast):
``TbCloudRTE(z, p, T, rh, frq, angles)`` with heights ``z`` from
`dacast.thermo.heights` (km, 0 at the lowest level), ``rh = e / e_s(T)`` from
`dacast.thermo` (Goff-Gratch over water, as pyrtlib, which so recovers ``e``), one
monochromatic frequency per channel, elevation ``90° − zenith``, seen from the
satellite, emissivity 1, no ray tracing, absorption models ``init_absmdl("R22SD")``
then ``O2AbsModel.model = "R22"``; the result is the ``tbtotal`` column.

pyrtlib keeps its models in class attributes: this function is not thread-safe.
One profile takes about 0.1 s.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import Tensor

from dacast.obs.microwave_tables import AMSUA_CHANNELS
from dacast.thermo import heights, relative_humidity


def pyrtlib_brightness_temperature(
    t: np.ndarray | Tensor,
    q: np.ndarray | Tensor,
    p: np.ndarray | Tensor,
    zenith_deg: np.ndarray | Tensor | float,
    channels: tuple[int, ...] = (6, 7, 8),
) -> np.ndarray:
    """Brightness temperatures by pyrtlib, one profile at a time.

    Args:
        t: temperature, shape ``(n, L)`` (K), bottom level first.
        q: specific humidity, shape ``(n, L)`` (g/kg).
        p: pressure levels, shape ``(L,)`` (hPa), strictly decreasing.
        zenith_deg: zenith angles, scalar or shape ``(n,)`` (degrees).
        channels: AMSU-A channel numbers (`AMSUA_CHANNELS`), length ``C``.

    Returns:
        ``tbtotal``, shape ``(n, C)`` (K), float64.
    """
    try:
        from pyrtlib.absorption_model import O2AbsModel
        from pyrtlib.tb_spectrum import TbCloudRTE
    except ImportError as exc:
        raise ImportError('pyrtlib_brightness_temperature needs pyrtlib: pip install -e ".[rt]"') from exc
    unknown = [c for c in channels if c not in AMSUA_CHANNELS]
    if unknown:
        raise ValueError(f"channel {unknown[0]} is not an AMSU-A channel of dacast ({sorted(AMSUA_CHANNELS)})")
    tt = torch.as_tensor(t, dtype=torch.float64).reshape(-1, np.shape(t)[-1])
    qq = torch.as_tensor(q, dtype=torch.float64).reshape(tt.shape)
    pp = torch.as_tensor(p, dtype=torch.float64)
    zen = torch.broadcast_to(torch.as_tensor(zenith_deg, dtype=torch.float64), tt.shape[:1])
    z = heights(pp, tt, qq).numpy()
    rh = relative_humidity(tt, qq, pp).numpy()
    frq = np.array([AMSUA_CHANNELS[c] for c in channels], dtype=np.float64)
    out = np.empty((tt.shape[0], len(channels)))
    for i in range(tt.shape[0]):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Number of levels too low", category=UserWarning)
            rte = TbCloudRTE(z[i], pp.numpy(), tt[i].numpy(), rh[i], frq, np.array([90.0 - float(zen[i])]))
        rte.satellite = True
        rte.init_absmdl("R22SD")
        O2AbsModel.model = "R22"
        out[i] = rte.execute()["tbtotal"].to_numpy()
    return out


__all__ = ["pyrtlib_brightness_temperature"]
