"""LETKF reductions and invariances: no localization equals the ETKF, shared weights across
variables, observation dropping, chunking and precomputed neighbour tables."""

from __future__ import annotations

import math

import pytest
import torch
from da_helpers import noisy_obs, ring_ensemble

from dacast.da import ETKFConfig, LETKFConfig, Localization, etkf, letkf, local_neighbours
from dacast.obs import Grid, every_kth, pairwise_distances, subset
from dacast.obs.operators import SquareObs

NO_LOC = Localization(length=math.inf)


@pytest.mark.parametrize(("k", "stride"), [(20, 4), (10, 1), (30, 1)], ids=["p<k", "p>=k", "p>k-large-k"])
@pytest.mark.parametrize(("inflation", "rtps"), [(1.0, 0.0), (1.2, 0.5)])
def test_infinite_localization_equals_etkf_on_ring(k: int, stride: int, inflation: float, rtps: float) -> None:
    n = 40
    prior = ring_ensemble(k, n, seed=k)
    op = every_kth(n, stride, 0.6)
    y = noisy_obs(op(prior.mean(0)), seed=11)
    grid = Grid.ring(n)
    nb = local_neighbours(grid, op, NO_LOC)
    assert bool((nb.count == op.n_obs).all())  # every point sees every observation
    local = letkf(prior, y, op, LETKFConfig(localization=NO_LOC, inflation=inflation, rtps=rtps), grid)
    glob = etkf(prior, y, op, ETKFConfig(inflation=inflation, rtps=rtps))
    torch.testing.assert_close(local.ensemble, glob.ensemble, rtol=0, atol=1e-10)
    torch.testing.assert_close(local.innovation, glob.innovation, rtol=0, atol=0)


def test_infinite_localization_equals_etkf_nonlinear_obs_2d_grid() -> None:
    """Also on a non-periodic 2-D grid, with a nonlinear operator."""
    grid = Grid.cartesian((6, 5))
    n, k = grid.n_points, 12
    prior = ring_ensemble(k, n, seed=3)
    op = SquareObs(base=subset(n, list(range(0, n, 2)), 1.0, grid_coords=grid.coords), scale=4.0)
    y = noisy_obs(op(prior.mean(0)), seed=12)
    local = letkf(prior, y, op, LETKFConfig(localization=NO_LOC), grid)
    glob = etkf(prior, y, op, ETKFConfig())
    torch.testing.assert_close(local.ensemble, glob.ensemble, rtol=0, atol=1e-10)


def test_huge_gaussian_length_approaches_etkf() -> None:
    """A long but finite length scale gives almost the ETKF (weights ≈ 1 everywhere)."""
    n, k = 40, 15
    prior = ring_ensemble(k, n, seed=4)
    op = every_kth(n, 2, 0.6)
    y = noisy_obs(op(prior.mean(0)), seed=13)
    loc = Localization(length=1e4, taper="gaussian")
    local = letkf(prior, y, op, LETKFConfig(localization=loc), Grid.ring(n))
    glob = etkf(prior, y, op, ETKFConfig())
    torch.testing.assert_close(local.ensemble, glob.ensemble, rtol=0, atol=1e-5)


@pytest.mark.parametrize("taper", ["gaspari_cohn", "gaussian"])
def test_each_point_is_an_etkf_with_tapered_error_variances(taper: str) -> None:
    """R-localization (Hunt et al. 2007): the analysis at grid point j equals a global ETKF that
    uses only the observations near j, their error variances divided by the taper weight."""
    n, k = 40, 10
    prior = ring_ensemble(k, n, seed=9)
    op = every_kth(n, 2, torch.linspace(0.4, 1.2, 20))
    y = noisy_obs(op(prior.mean(0)), seed=17)
    grid = Grid.ring(n)
    loc = Localization(length=3.0, taper=taper)  # type: ignore[arg-type]
    post = letkf(prior, y, op, LETKFConfig(localization=loc, inflation=1.1), grid)
    for j in (0, 7, 33):
        dist = pairwise_distances(grid.coords[j : j + 1], op.locations, grid.period)[0]
        w = loc.weights(dist)
        keep = w > 0
        assert 0 < int(keep.sum()) < op.n_obs
        op_j = subset(n, op.indices[keep], op.error_std[keep] / w[keep].sqrt())
        ref = etkf(prior, y[keep], op_j, ETKFConfig(inflation=1.1))
        torch.testing.assert_close(post.ensemble[:, j], ref.ensemble[:, j], rtol=0, atol=1e-12)


class _FixedObs:
    """Operator stand-in returning precomputed obs-space ensembles whatever the state it is given."""

    def __init__(self, hx: torch.Tensor, n_state: int, locations: torch.Tensor, error_std: torch.Tensor) -> None:
        self.hx, self.n_state, self.locations, self.error_std = hx, n_state, locations, error_std

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.hx


@pytest.mark.parametrize("loc", [Localization(length=2.5), NO_LOC], ids=["local", "global"])
def test_multiple_variables_share_weights(loc: Localization) -> None:
    """State laid out (var, point): the analysis of each variable equals a one-variable LETKF
    driven by the same observation-space ensemble (hence the same local weights)."""
    n_points, n_var, k = 24, 3, 10
    grid = Grid.ring(n_points)
    prior = torch.cat([ring_ensemble(k, n_points, seed=20 + v) * (v + 1) for v in range(n_var)], dim=1)
    # Observe variable 0 at every 3rd point and variable 2 at every 4th point.
    idx = list(range(0, n_points, 3)) + [2 * n_points + j for j in range(1, n_points, 4)]
    coords = grid.coords.repeat(n_var, 1)  # location of state entry (v, j) is point j
    op = subset(n_var * n_points, idx, 0.7, grid_coords=coords)
    y = noisy_obs(op(prior.mean(0)), seed=14)
    config = LETKFConfig(localization=loc, inflation=1.1)
    full = letkf(prior, y, op, config, grid)
    hx = op(prior)
    for v in range(n_var):
        block = slice(v * n_points, (v + 1) * n_points)
        fixed = _FixedObs(hx, n_points, op.locations, op.error_std)
        single = letkf(prior[:, block], y, fixed, config, grid)  # type: ignore[arg-type]
        torch.testing.assert_close(full.ensemble[:, block], single.ensemble, rtol=0, atol=1e-12)
    # Unobserved variable 1 is still updated through the shared weights.
    assert float((full.ensemble[:, n_points : 2 * n_points] - prior[:, n_points : 2 * n_points]).abs().max()) > 1e-2


def test_min_weight_drops_observations() -> None:
    """Gaussian taper: min_weight m equals cutting the taper at d_m = L sqrt(-2 ln m)."""
    n, k, length, d_m = 40, 12, 2.0, 2.5
    prior = ring_ensemble(k, n, seed=5)
    op = every_kth(n, 1, 0.9)
    y = noisy_obs(op(prior.mean(0)), seed=15)
    grid = Grid.ring(n)
    m = math.exp(-0.5 * (d_m / length) ** 2)
    dropped = Localization(length=length, taper="gaussian", support=10.0, min_weight=m)
    cut = Localization(length=length, taper="gaussian", support=d_m)
    kept_all = Localization(length=length, taper="gaussian", support=10.0)
    a = letkf(prior, y, op, LETKFConfig(localization=dropped), grid)
    b = letkf(prior, y, op, LETKFConfig(localization=cut), grid)
    c = letkf(prior, y, op, LETKFConfig(localization=kept_all), grid)
    torch.testing.assert_close(a.ensemble, b.ensemble, rtol=0, atol=1e-12)
    assert float((a.ensemble - c.ensemble).abs().max()) > 1e-4  # the dropped obs did matter


def test_far_observations_leave_prior_unchanged() -> None:
    grid = Grid.cartesian((20,))
    prior = ring_ensemble(8, 20, seed=6)
    op = subset(20, [19], 1.0, grid_coords=grid.coords)
    y = op(prior.mean(0)) + 3.0
    post = letkf(prior, y, op, LETKFConfig(localization=Localization(length=1.0)), grid)
    cutoff = 2 * math.sqrt(10 / 3)
    far = grid.coords[:, 0] <= 19 - cutoff
    torch.testing.assert_close(post.ensemble[:, far], prior[:, far], rtol=0, atol=1e-13)
    assert float((post.ensemble[:, 19] - prior[:, 19]).abs().max()) > 0.1


def test_chunking_and_precomputed_neighbours_do_not_change_result() -> None:
    n, k = 60, 10
    prior = ring_ensemble(k, n, seed=7)
    op = every_kth(n, 2, 0.5)
    y = noisy_obs(op(prior.mean(0)), seed=16)
    grid = Grid.ring(n)
    loc = Localization(length=3.0, max_obs=6)
    ref = letkf(prior, y, op, LETKFConfig(localization=loc, chunk_mb=1000.0), grid)
    tiny = letkf(prior, y, op, LETKFConfig(localization=loc, chunk_mb=1e-4), grid)  # one point per chunk
    torch.testing.assert_close(tiny.ensemble, ref.ensemble, rtol=0, atol=1e-12)
    table = local_neighbours(grid, op, loc)
    assert table.index.shape[1] == 6
    pre = letkf(prior, y, op, LETKFConfig(localization=loc), grid, table)
    torch.testing.assert_close(pre.ensemble, ref.ensemble, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="neighbour table"):
        letkf(prior, y, op, LETKFConfig(localization=loc), grid, local_neighbours(Grid.ring(30), op, loc))


def test_letkf_input_validation() -> None:
    grid = Grid.ring(10)
    prior = ring_ensemble(5, 15, seed=8)
    op = every_kth(15, 3, 1.0)
    with pytest.raises(ValueError, match="not a multiple"):
        letkf(prior, op(prior.mean(0)), op, LETKFConfig(localization=Localization(length=2.0)), grid)
    with pytest.raises(ValueError, match="inflation"):
        LETKFConfig(localization=Localization(length=2.0), inflation=0.0)
    with pytest.raises(ValueError, match="chunk_mb"):
        LETKFConfig(localization=Localization(length=2.0), chunk_mb=-1.0)
