"""Scores of CUDA tensors equal those of CPU tensors (skipped without a GPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dacast.verify import contingency, csi, fss, mae, radial_power_spectrum, score_nowcast

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]


def test_scores_on_cuda() -> None:
    rng = np.random.default_rng(2)
    obs = torch.from_numpy(rng.gamma(0.6, 3.0, (3, 40, 50)))
    fc = torch.roll(obs, 1, -1)
    fc[:, :2, :2] = float("nan")
    table = contingency(fc.cuda(), obs.cuda(), 1.0)
    assert table.hits.device.type == "cuda"
    torch.testing.assert_close(csi(table).cpu(), csi(contingency(fc, obs, 1.0)))
    torch.testing.assert_close(fss(fc.cuda(), obs.cuda(), 1.0, 5).cpu(), fss(fc, obs, 1.0, 5))
    torch.testing.assert_close(mae(fc.cuda(), obs.cuda()).cpu(), mae(fc, obs))
    k, p = radial_power_spectrum(obs.cuda())
    torch.testing.assert_close(p.cpu(), radial_power_spectrum(obs)[1])
    ds_gpu = score_nowcast(fc.cuda(), obs.cuda())
    ds_cpu = score_nowcast(fc, obs)
    np.testing.assert_allclose(ds_gpu["fss"].values, ds_cpu["fss"].values, rtol=1e-12)
    np.testing.assert_allclose(ds_gpu["csi"].values, ds_cpu["csi"].values, rtol=1e-12)
