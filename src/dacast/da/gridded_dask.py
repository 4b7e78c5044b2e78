"""The gridded LETKF as domain tiles with halos on a Dask distributed cluster.

``H(prior)`` is computed once by the caller's process (whitened observation
anomalies and innovations, plus the neighbour table of the weight points).
Each tile then receives only its own prior columns ``(k, n_var, ty, tx)``, the
rows of its weight points' neighbour table, and the observations within the
localization cut-off of those weight points (its halo), re-indexed. With
``weight_stride = s > 1`` tiles are aligned with the coarse grid and also
compute the weights of the coarse row and column just past their far edges
(the neighbouring tile's first ones), so no tile needs another's results.
The result equals `gridded_letkf` to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from dacast.da.analysis import Analysis
from dacast.da.gridded import GriddedLETKFConfig, analyse_tile, check_gridded_inputs, prepare, weight_rows
from dacast.geometry import Neighbours
from dacast.obs.operators import ObsOperator


@dataclass(frozen=True)
class TilePayload:
    """Everything one tile needs (see `analyse_tile` for the shapes)."""

    prior: Tensor
    ya_t: Tensor
    d: Tensor
    index: Tensor
    sqrt_w: Tensor
    config: GriddedLETKFConfig


def _run_tile(payload: TilePayload) -> Tensor:
    return analyse_tile(payload.prior, payload.ya_t, payload.d, payload.index, payload.sqrt_w, payload.config)


def tile_bounds(n: int, parts: int, stride: int) -> list[tuple[int, int]]:
    """Split ``n`` grid points into ``parts`` contiguous ranges whose bounds are multiples of ``stride``."""
    cells = n // stride
    if not 1 <= parts <= cells:
        raise ValueError(f"cannot split {n} points (weight stride {stride}) into {parts} tiles")
    edges = [round(i * cells / parts) * stride for i in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def localise(index: Tensor, sqrt_w: Tensor) -> tuple[Tensor, Tensor]:
    """The observations a neighbour table uses, and the table re-indexed into them.

    Args:
        index: global observation indices, any shape ``(..., width)``.
        sqrt_w: taper weights of the same shape (0: padding).

    Returns:
        ``(used, local)``: the sorted global indices with a non-zero weight ``(m,)`` (``[0]`` when
        there are none, so padding can index it) and ``index`` re-indexed into ``used``.
    """
    live = sqrt_w > 0
    used = torch.unique(index[live])
    local = torch.where(live, torch.searchsorted(used, index), torch.zeros_like(index))
    if used.numel() == 0:
        used = torch.zeros(1, dtype=index.dtype, device=index.device)
    return used, local


def _payload(
    prior: Tensor,
    ya_t: Tensor,
    d: Tensor,
    index: Tensor,
    sqrt_w: Tensor,
    config: GriddedLETKFConfig,
    ys: tuple[int, int],
    xs: tuple[int, int],
) -> TilePayload:
    _, _, ny, nx = prior.shape
    rows = weight_rows(*ys, ny, config.weight_stride).to(index.device)
    cols = weight_rows(*xs, nx, config.weight_stride).to(index.device)
    idx = index[rows][:, cols]
    sw = sqrt_w[rows][:, cols]
    halo, local_idx = localise(idx, sw)  # sorted observation indices used by this tile
    return TilePayload(
        prior=prior[:, :, ys[0] : ys[1], xs[0] : xs[1]].contiguous(),
        ya_t=ya_t[halo].contiguous(),
        d=d[halo].contiguous(),
        index=local_idx,
        sqrt_w=sw.contiguous(),
        config=config,
    )


def gridded_letkf_dask(
    client: Any,
    prior: Tensor,
    y: Tensor,
    operator: ObsOperator,
    config: GriddedLETKFConfig,
    *,
    dx_km: float,
    tiles: tuple[int, int] = (2, 2),
    local: Neighbours | None = None,
    hx: Tensor | None = None,
) -> Analysis:
    """`gridded_letkf` computed as ``tiles[0] x tiles[1]`` domain tiles on a Dask cluster.

    Args:
        client: a ``dask.distributed.Client`` (LocalCluster or a remote scheduler).
        prior: forecast ensemble, shape ``(k, n_var, ny, nx)``.
        y: observations, shape ``(n_obs,)``.
        operator: observation operator (``locations`` ``(n_obs, 2)``, ``(y, x)`` km).
        config: filter settings.
        dx_km: grid spacing (km).
        tiles: number of tiles along y and x (bounds aligned with ``weight_stride``).
        local: `gridded_neighbours` of this network (searched when omitted).
        hx: ``operator(prior.reshape(k, -1))`` when the caller has it, shape ``(k, n_obs)``.

    Returns:
        `Analysis` whose ``ensemble`` is ``(k, n_var, ny, nx)`` (a copy of the prior
        when there are no observations) and whose ``innovation`` is
        ``y - mean(H(prior))``, shape ``(n_obs,)``.
    """
    check_gridded_inputs(prior, y, operator)
    if y.shape[0] == 0:
        return Analysis.of(prior.clone(), prior.new_zeros(0))
    _, _, ny, nx = prior.shape
    ya_t, d, index, sqrt_w, innovation = prepare(prior, y, operator, config, dx_km, local, hx)
    boxes = [
        (ys, xs)
        for ys in tile_bounds(ny, tiles[0], config.weight_stride)
        for xs in tile_bounds(nx, tiles[1], config.weight_stride)
    ]
    payloads = [_payload(prior, ya_t, d, index, sqrt_w, config, ys, xs) for ys, xs in boxes]
    scattered = client.scatter(payloads)
    futures = client.map(_run_tile, scattered, pure=False)
    results = client.gather(futures)
    out = torch.empty_like(prior)
    for (ys, xs), part in zip(boxes, results, strict=True):
        out[:, :, ys[0] : ys[1], xs[0] : xs[1]] = part
    return Analysis.of(out, innovation)


__all__ = ["TilePayload", "gridded_letkf_dask", "localise", "tile_bounds"]
