"""dacast's LETKF equals DAPPER's to round-off, without importing DAPPER.

Reference: DAPPER 1.7.1 (nansencenter/DAPPER), ``dapper/da_methods/ensemble.py``,
``local_analyses`` (the local analyses inside ``LETKF.assimilate``) with
``dapper.tools.localization.nd_Id_localization((40,), (1,))``, ``loc_rad=4``,
taper ``"GC"`` and a diagonal ``CovMat`` R. The inputs and DAPPER's analyses are
stored in ``dapper_letkf_reference.npz``, written by
``make_dapper_letkf_reference.py`` (run by hand; see its docstring).

DAPPER's Gaspari-Cohn half-width is ``1.82 * loc_rad`` (support ``3.64 * loc_rad``)
and it drops taper coefficients ``<= 1e-3``, hence
``Localization(length=4, support=3.64*4, min_weight=1e-3)`` here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from dacast.da import LETKFConfig, Localization, letkf
from dacast.obs import Grid, subset

REFERENCE = Path(__file__).with_name("dapper_letkf_reference.npz")
CASES = ("n20", "n7", "n20_r", "n10_sparse")


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def test_reference_file_is_complete(reference: dict[str, np.ndarray]) -> None:
    assert sorted(reference["cases"].tolist()) == sorted(CASES)
    assert float(reference["loc_rad"]) == 4.0
    assert REFERENCE.stat().st_size < 200_000


@pytest.mark.parametrize("form", ["auto", "ensemble", "gram"])
@pytest.mark.parametrize("case", CASES)
def test_letkf_matches_dapper(reference: dict[str, np.ndarray], case: str, form: str) -> None:
    prior = torch.from_numpy(reference[f"{case}/prior"])
    y = torch.from_numpy(reference[f"{case}/y"])
    expected = torch.from_numpy(reference[f"{case}/analysis"])
    n_state = prior.shape[1]
    op = subset(
        n_state, torch.from_numpy(reference[f"{case}/obs_inds"]), torch.from_numpy(reference[f"{case}/obs_std"])
    )
    loc_rad = float(reference["loc_rad"])
    config = LETKFConfig(
        localization=Localization(length=loc_rad, support=3.64 * loc_rad, min_weight=1e-3),
        form=form,  # type: ignore[arg-type]
    )
    result = letkf(prior, y, op, config, Grid.ring(n_state))
    # The comparison is not trivial: the analysis moved far from the prior.
    assert float((expected - prior).abs().max()) > 1.0
    torch.testing.assert_close(result.ensemble, expected, rtol=0, atol=1e-10)
