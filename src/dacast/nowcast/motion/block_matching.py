"""TREC: block-matching motion by maximum cross-correlation.

TREC (Tracking Radar Echoes by Correlation; Rinehart & Garvey 1978, Tuttle &
Foote 1990) is the conventional motion estimate of many operational nowcasts
(RIKEN's real-time nowcasts among them). The earlier frame is cut into square
blocks; each block is compared, by the normalised (Pearson) cross-correlation,
with every block of the later frame displaced by up to ``search`` pixels, and
the displacement with the highest correlation is the block's motion vector.

Everything is batched: all blocks, all frame pairs and all batch members are
one tensor. The correlation over the search window is computed with FFTs of
size ``block + 2 * search`` and the window statistics with integral images, so
no Python loop runs over blocks, displacements or pairs.

Quality control (per block): the earlier block must hold enough valid pixels
and structure (standard deviation ``>= min_std``), the correlation peak must
reach ``min_corr`` and must not sit on the edge of the search window, and the
vector may not deviate by more than ``max_deviation`` pixels from the median of
its 3 x 3 neighbours (Tuttle & Foote 1990's consistency check). Rejected
vectors are filled, and all vectors smoothed, by a normalised Gaussian
convolution on the block grid; the block-centre vectors are then interpolated
bilinearly to every pixel.

Sign convention (the one of pysteps): ``motion[0] = u`` is the displacement
along +x (columns, east on a north-up grid) and ``motion[1] = v`` along +y
(rows, **downward**, i.e. south on a north-up grid), in pixels per time step
between consecutive frames: a feature at ``(y, x)`` in frame ``t`` is found
at ``(y + v, x + u)`` in frame ``t + 1``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dacast.nowcast.motion.smoothing import normalized_blur


def _prepare(frames: Tensor) -> tuple[Tensor, Tensor, tuple[int, ...]]:
    """Flatten the batch axes; NaN -> the minimum finite value; offset so that it is 0."""
    if frames.ndim < 3 or frames.shape[-3] < 2:
        raise ValueError(f"frames must have shape (..., T>=2, H, W), got {tuple(frames.shape)}")
    lead = tuple(frames.shape[:-3])
    x = frames.reshape(-1, *frames.shape[-3:]).float()  # float32 is ample for correlations
    valid = torch.isfinite(x)
    big = torch.finfo(x.dtype).max
    low = torch.where(valid, x, torch.full_like(x, big)).amin((-3, -2, -1), keepdim=True)
    low = torch.where(low == big, torch.zeros_like(low), low)
    x = torch.where(valid, x - low, torch.zeros_like(x))
    return x, valid, lead


def _box_sums(x: Tensor, size: int) -> Tensor:
    """Sums over every ``size x size`` window of ``x`` (..., H, W) -> (..., H - size + 1, W - size + 1)."""
    c = F.pad(x.cumsum(-1).cumsum(-2), (1, 0, 1, 0))
    return c[..., size:, size:] - c[..., :-size, size:] - c[..., size:, :-size] + c[..., :-size, :-size]


def _correlation(first: Tensor, second: Tensor, block: int, search: int, stride: int) -> tuple[Tensor, Tensor]:
    """Normalised cross-correlation of every block over its search window.

    Args:
        first: earlier frames, shape ``(N, H, W)``, no-echo level 0.
        second: later frames, shape ``(N, H, W)``.

    Returns:
        ``(ncc, std)``: correlation, shape ``(N, n_blocks, K, K)`` with
        ``K = 2 * search + 1`` (index ``search`` = zero displacement), and the
        standard deviation of each earlier block, shape ``(N, n_blocks)``.
    """
    n = first.shape[0]
    size = block + 2 * search
    k = 2 * search + 1
    m = float(block * block)
    tmpl = F.unfold(first.unsqueeze(1), block, stride=stride)  # (N, b*b, nb)
    nb = tmpl.shape[-1]
    tmpl = tmpl.transpose(1, 2).reshape(n, nb, block, block)
    tmpl = tmpl - tmpl.mean((-2, -1), keepdim=True)
    t_ss = (tmpl**2).sum((-2, -1))
    padded = F.pad(second.unsqueeze(1), (search,) * 4)  # (N, 1, H + 2s, W + 2s)
    srch = F.unfold(padded, size, stride=stride).transpose(1, 2).reshape(n, nb, size, size)
    srch = srch - srch.mean((-2, -1), keepdim=True)  # no effect on the result, better rounding
    # circular cross-correlation; lags 0..2s do not wrap as the window is block + 2s wide
    fft = (size, size)
    cross = torch.fft.irfft2(torch.fft.rfft2(srch, s=fft) * torch.fft.rfft2(tmpl, s=fft).conj(), s=fft)
    cross = cross[..., :k, :k]
    # window sums of the later frame at every lag, from float64 integral images
    p64 = padded.double()
    sums = torch.cat([_box_sums(p64, block), _box_sums(p64**2, block)], 1)  # (N, 2, ., .)
    sums = F.unfold(sums, k, stride=stride).view(n, 2, k, k, nb).permute(1, 0, 4, 2, 3)
    s_ss = (sums[1] - sums[0] ** 2 / m).clamp_min(0.0).to(cross.dtype)
    denom = torch.sqrt(t_ss.unsqueeze(-1).unsqueeze(-1) * s_ss)
    tiny = 1e-6 * m
    ncc = torch.where(denom > tiny, cross / denom.clamp_min(tiny), torch.zeros_like(cross))
    return ncc.clamp(-1.0, 1.0), torch.sqrt(t_ss / m)


def _peak(ncc: Tensor, search: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Sub-pixel peak of correlation surfaces ``(..., K, K)`` by 3-point parabolas.

    Returns ``(u, v, peak_value, on_edge)``, each of shape ``(...)``.
    """
    k = ncc.shape[-1]
    flat = ncc.flatten(-2)
    best, idx = flat.max(-1)
    iy, ix = idx // k, idx % k
    on_edge = (iy == 0) | (iy == k - 1) | (ix == 0) | (ix == k - 1)

    def offset(minus: Tensor, plus: Tensor) -> Tensor:
        curv = minus - 2.0 * best + plus
        d = torch.where(curv < 0, 0.5 * (minus - plus) / curv.clamp_max(-1e-12), torch.zeros_like(best))
        return d.clamp(-0.5, 0.5)

    def at(yy: Tensor, xx: Tensor) -> Tensor:
        return flat.gather(-1, (yy.clamp(0, k - 1) * k + xx.clamp(0, k - 1)).unsqueeze(-1)).squeeze(-1)

    dy = offset(at(iy - 1, ix), at(iy + 1, ix))
    dx = offset(at(iy, ix - 1), at(iy, ix + 1))
    dy = torch.where(on_edge, torch.zeros_like(dy), dy)
    dx = torch.where(on_edge, torch.zeros_like(dx), dx)
    u = ix.to(ncc.dtype) - search + dx
    v = iy.to(ncc.dtype) - search + dy
    return u, v, best, on_edge


def _consistent(vectors: Tensor, ok: Tensor, max_deviation: float) -> Tensor:
    """Reject vectors that differ from the median of their valid 3 x 3 neighbours.

    Args:
        vectors: block vectors, shape ``(B, 2, ny, nx)``.
        ok: accepted so far, shape ``(B, ny, nx)``.
    """
    b, _, ny, nx = vectors.shape
    nan = torch.full_like(vectors, float("nan"))
    masked = torch.where(ok.unsqueeze(1), vectors, nan)
    nb = F.unfold(F.pad(masked, (1, 1, 1, 1), value=float("nan")), 3).view(b, 2, 9, ny, nx)
    nb = torch.cat([nb[:, :, :4], nb[:, :, 5:]], dim=2)  # neighbours without the centre
    med = nb.nanmedian(dim=2).values  # NaN where no valid neighbour
    dev = torch.linalg.vector_norm(vectors - med, dim=1)
    return ok & ~(dev > max_deviation)  # keeps isolated vectors (dev NaN)


def trec(
    frames: Tensor,
    *,
    block: int = 32,
    search: int = 10,
    stride: int = 8,
    min_corr: float = 0.5,
    min_std: float = 0.5,
    max_nan_fraction: float = 0.5,
    max_deviation: float = 3.0,
    sigma: float = 1.0,
) -> Tensor:
    """TREC motion field from consecutive frames, averaged over all consecutive pairs.

    Pass ``frames[-2:]`` to use only the last pair. The correlation surfaces of
    the ``T - 1`` pairs are averaged before the peak is searched, which is more
    robust than averaging vectors.

    Args:
        frames: image sequence, shape ``(T, H, W)`` or ``(B, T, H, W)``, oldest
            first, equally spaced in time, in a log scale (dBR or dBZ). NaN
            marks missing data: NaN pixels are set to the lowest finite value
            (the no-echo level) and blocks with more than ``max_nan_fraction``
            NaN pixels are rejected.
        block: block edge [pixels].
        search: largest displacement searched per direction [pixels per step].
        stride: spacing of the block grid [pixels]; ``stride < block`` overlaps blocks.
        min_corr: lowest accepted peak correlation.
        min_std: lowest accepted standard deviation of a block [input units];
            flat (rain-free) blocks carry no motion information.
        max_nan_fraction: highest accepted fraction of NaN pixels in a block.
        max_deviation: largest accepted distance to the neighbours' median vector [pixels].
        sigma: Gaussian width of the filling/smoothing on the block grid [blocks].

    Returns:
        Motion field, shape ``(2, H, W)`` or ``(B, 2, H, W)`` [pixels per time
        step], ``u`` (+x, columns) first, ``v`` (+y, rows downward) second; zero
        where no block in the batch member passed quality control.
    """
    h, w = frames.shape[-2:]
    if block > h or block > w:
        raise ValueError(f"block {block} larger than the {h} x {w} grid")
    if min(block, search, stride) < 1:
        raise ValueError("block, search and stride must be positive")
    x, valid, lead = _prepare(frames)
    bsz, t = x.shape[:2]
    first, second = x[:, :-1].reshape(-1, h, w), x[:, 1:].reshape(-1, h, w)
    ncc, std = _correlation(first, second, block, search, stride)
    ny, nx = (h - block) // stride + 1, (w - block) // stride + 1
    frac_nan = 1.0 - F.avg_pool2d(valid[:, :-1].reshape(-1, 1, h, w).to(x.dtype), block, stride=stride)
    usable = (std >= min_std) & (frac_nan.flatten(1) <= max_nan_fraction)  # (B*P, nb)
    # average the surfaces of the pairs in which the block is usable
    weight = usable.to(x.dtype).view(bsz, t - 1, -1, 1, 1)
    ncc = ncc.view(bsz, t - 1, *ncc.shape[1:])
    n_used = weight.sum(1)
    mean_ncc = (ncc * weight).sum(1) / n_used.clamp_min(1.0)
    u, v, best, on_edge = _peak(mean_ncc, search)  # (B, nb)
    ok = (n_used.view(bsz, -1) > 0) & (best >= min_corr) & ~on_edge
    vectors = torch.stack([u, v], 1).view(bsz, 2, ny, nx)
    ok = ok.view(bsz, ny, nx)
    if max_deviation > 0:
        ok = _consistent(vectors, ok, max_deviation)
    okf = ok.to(x.dtype)
    smooth, support = normalized_blur(torch.where(ok.unsqueeze(1), vectors, 0.0), okf, max(sigma, 1e-3))
    count = okf.sum((-2, -1), keepdim=True)
    mean = (vectors * okf.unsqueeze(1)).sum((-2, -1), keepdim=True) / count.clamp_min(1.0).unsqueeze(1)
    far = (support < 1e-3).unsqueeze(1)  # no accepted vector within reach: global mean
    grid_vectors = torch.where(far, mean.expand_as(smooth), smooth)
    field = _to_pixels(grid_vectors, h, w, block, stride)
    dtype = frames.dtype if frames.is_floating_point() else torch.float32
    return field.reshape(*lead, 2, h, w).to(dtype)


def _to_pixels(vectors: Tensor, h: int, w: int, block: int, stride: int) -> Tensor:
    """Bilinear interpolation of block-centre vectors ``(B, 2, ny, nx)`` to ``(B, 2, H, W)``."""
    b, _, ny, nx = vectors.shape
    centre = (block - 1) / 2.0
    ys = (torch.arange(h, dtype=vectors.dtype, device=vectors.device) - centre) / stride
    xs = (torch.arange(w, dtype=vectors.dtype, device=vectors.device) - centre) / stride
    gy = 2.0 * ys / max(ny - 1, 1) - 1.0
    gx = 2.0 * xs / max(nx - 1, 1) - 1.0
    grid = torch.stack(torch.meshgrid(gx, gy, indexing="xy"), -1).unsqueeze(0).expand(b, h, w, 2)
    return F.grid_sample(vectors, grid, mode="bilinear", padding_mode="border", align_corners=True)
