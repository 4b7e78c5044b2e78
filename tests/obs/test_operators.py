"""Observation operators: shapes, values, locations, error std and input validation."""

from __future__ import annotations

import pytest
import torch

from dacast.obs import IndexObs, MatrixObs, ObsOperator, SquareObs, every_kth, identity, matrix, subset


def _ensemble(k: int = 4, n: int = 10) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randn((k, n), generator=gen, dtype=torch.float64)


def test_identity() -> None:
    x = _ensemble()
    op = identity(10, 0.5)
    assert isinstance(op, ObsOperator)
    assert op.n_obs == 10 and op.n_state == 10
    assert torch.equal(op(x), x)
    assert torch.equal(op.locations, torch.arange(10, dtype=torch.float64)[:, None])
    assert torch.equal(op.error_std, torch.full((10,), 0.5, dtype=torch.float64))
    assert torch.equal(op.matrix(), torch.eye(10, dtype=torch.float64))


def test_subset_values_locations_and_per_obs_std() -> None:
    x = _ensemble()
    op = subset(10, [7, 2, 2, 9], torch.tensor([0.1, 0.2, 0.3, 0.4]))
    assert op(x).shape == (4, 4)
    assert torch.equal(op(x), x[:, [7, 2, 2, 9]])
    assert op.locations.squeeze(-1).tolist() == [7.0, 2.0, 2.0, 9.0]
    torch.testing.assert_close(op.error_std, torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64))
    torch.testing.assert_close(op(x), x @ op.matrix().T)
    # Any leading batch axes.
    xb = torch.randn((2, 3, 10), dtype=torch.float64)
    assert op(xb).shape == (2, 3, 4)


def test_every_kth_and_grid_coords() -> None:
    op = every_kth(10, 3, 1.0, offset=1)
    assert op.indices.tolist() == [1, 4, 7]
    x = _ensemble()
    assert torch.equal(op(x), x[:, [1, 4, 7]])
    coords = torch.stack([torch.arange(10.0) * 2.0, torch.arange(10.0) * -1.0], dim=-1).double()
    op2 = every_kth(10, 4, 1.0, grid_coords=coords)
    assert op2.locations.shape == (3, 2)
    assert torch.equal(op2.locations, coords[[0, 4, 8]])
    with pytest.raises(ValueError, match="k must be positive"):
        every_kth(10, 0, 1.0)


def test_matrix_operator() -> None:
    x = _ensemble()
    h = torch.zeros((3, 10), dtype=torch.float64)
    h[0, 1] = h[0, 2] = 0.5
    h[1, 5] = 1.0
    h[2, 8] = -2.0
    h[2, 9] = 2.0
    op = matrix(h, [0.3, 0.4, 0.5])
    assert isinstance(op, MatrixObs) and isinstance(op, ObsOperator)
    assert op.n_state == 10 and op.n_obs == 3
    torch.testing.assert_close(op(x), x @ h.T, rtol=1e-15, atol=0)
    # Default locations: |H|-weighted mean grid index of each row.
    torch.testing.assert_close(op.locations.squeeze(-1), torch.tensor([1.5, 5.0, 8.5], dtype=torch.float64))
    assert op(x.float()).dtype == torch.float32
    loc = torch.tensor([[0.0], [1.0], [2.0]], dtype=torch.float64)
    assert torch.equal(matrix(h, 1.0, locations=loc).locations, loc)
    with pytest.raises(ValueError, match="one row per observation"):
        matrix(h, 1.0, locations=torch.zeros((2, 1)))
    with pytest.raises(ValueError, match="2-D"):
        MatrixObs(h=torch.zeros(3), error_std=torch.ones(3), locations=torch.zeros((3, 1)))


def test_square_obs_is_nonlinear() -> None:
    x = _ensemble()
    op = SquareObs(base=subset(10, [0, 3], 0.2), scale=2.0)
    assert isinstance(op, ObsOperator)
    assert op.n_state == 10 and op.n_obs == 2
    torch.testing.assert_close(op(x), x[:, [0, 3]] ** 2 / 2.0, rtol=1e-15, atol=0)
    assert torch.equal(op.locations, op.base.locations)
    assert torch.equal(op.error_std, torch.full((2,), 0.2, dtype=torch.float64))
    a, b = x[0], x[1]
    assert not torch.allclose(op(a + b), op(a) + op(b))
    assert not torch.allclose(op(2 * a), 2 * op(a))


@pytest.mark.parametrize("indices", [[0, 10], [-1, 3], [11]])
def test_out_of_range_indices_raise(indices: list[int]) -> None:
    with pytest.raises(ValueError, match="indices must lie"):
        subset(10, indices, 1.0)
    with pytest.raises(ValueError, match="indices must lie"):
        IndexObs(
            n_state=10,
            indices=torch.tensor(indices),
            error_std=torch.ones(len(indices), dtype=torch.float64),
            locations=torch.zeros((len(indices), 1)),
        )


@pytest.mark.parametrize("error_std", [0.0, -1.0, [1.0, 0.0, 1.0], [1.0, 1.0], [[1.0, 1.0, 1.0]], float("nan")])
def test_bad_error_std_raises(error_std: object) -> None:
    with pytest.raises(ValueError, match="error_std|positive"):
        subset(10, [1, 2, 3], error_std)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="error_std|positive"):
        matrix(torch.eye(3, 10, dtype=torch.float64), error_std)  # type: ignore[arg-type]


def test_stacked_operator_concatenates_parts():
    from dacast.obs import SquareObs, StackedObs, stacked

    a = every_kth(10, 2, 0.5)
    b = SquareObs(subset(10, [1, 3], 2.0), scale=2.0)
    op = stacked(a, b)
    assert isinstance(op, StackedObs) and isinstance(op, ObsOperator)
    x = torch.arange(20.0, dtype=torch.float64).reshape(2, 10)
    assert torch.equal(op(x), torch.cat([a(x), b(x)], dim=-1))
    assert op.n_obs == 7 and op.error_std.tolist() == [0.5] * 5 + [2.0, 2.0]
    assert op.locations.shape == (7, 1)
    assert [s.stop - s.start for s in op.slices()] == [5, 2]
    with pytest.raises(ValueError, match="different lengths"):
        stacked(a, every_kth(12, 2, 0.5))
    with pytest.raises(ValueError, match="at least one"):
        stacked()
