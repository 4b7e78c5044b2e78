"""AMSU-A geometry and the bias predictors."""

import pytest
import torch

from dacast.models.column import ColumnAtmosphere
from dacast.obs.satellite import (
    PREDICTORS,
    SatelliteBias,
    amsua_true_bias,
    bias_predictors,
    scan_angles,
    swath_columns,
    zenith_angle,
)


def test_scan_angles_like_amsua():
    s = scan_angles()
    assert s.shape == (30,)
    assert float(s[0]) == pytest.approx(-48.33) and float(s[-1]) == pytest.approx(48.33)
    assert float(s[1] - s[0]) == pytest.approx(3.333, abs=1e-3)


def test_zenith_angle_larger_than_scan_angle():
    z = zenith_angle(torch.tensor([0.0, 30.0, -48.33], dtype=torch.float64))
    assert float(z[0]) == 0.0
    assert float(z[1]) > 30.0
    assert float(z[2]) == pytest.approx(57.6, abs=0.1)  # the AMSU-A edge of scan
    with pytest.raises(ValueError, match="misses the Earth"):
        zenith_angle(torch.tensor([80.0], dtype=torch.float64))


def test_swath_moves_and_wraps():
    a, b = swath_columns(0, 40), swath_columns(1, 40, step=7)
    assert a.tolist() == list(range(30))
    assert int(b[0]) == 7 and int(b[-1]) == (7 + 29) % 40


def test_predictors_shape_and_scale():
    m = ColumnAtmosphere()
    t, q = m.t_clim.T, m.q_clim.T
    scan = scan_angles(40)
    p = bias_predictors(scan, t, q, m.pressure)
    assert p.shape == (40, len(PREDICTORS))
    assert torch.equal(p[:, 0], torch.ones(40, dtype=torch.float64))
    assert float(p[:, 1].abs().max()) == pytest.approx(1.0)
    assert float(p[:, 3:].abs().max()) < 2.0  # thickness anomalies are O(1)
    tropics, polar_winter = int(torch.argmin(m.latitude.abs())), int(torch.argmin(m.latitude))
    assert float(p[tropics, 3]) > float(p[polar_winter, 3])  # warm air masses are thick


def test_true_bias_size():
    m = ColumnAtmosphere()
    p = bias_predictors(scan_angles(40), m.t_clim.T, m.q_clim.T, m.pressure)
    b = amsua_true_bias()(p)
    assert b.shape == (40, 3)
    assert 0.2 < float(b.abs().mean()) < 1.2
    with pytest.raises(ValueError, match="channel 9"):
        amsua_true_bias((6, 9))
    with pytest.raises(ValueError, match="shape"):
        SatelliteBias(channels=(6,), coefficients=torch.zeros(2, 5))
