"""Ensemble members of a noise-driven `MultiResNowcaster` at the cost of its noise-dependent part.

`MultiResNowcaster.forward` run once per member repeats, for every member, all the work that does
not depend on the latent noise: the encoder over the past frames, the extrapolation input's features,
and — inside every forecaster cell and output head, whose convolutions read ``[input, extrapolation
features, hidden state]`` concatenated — the extrapolation's share of each convolution. A convolution
is linear in its input channels, so it splits into one convolution per group of input channels:

    gates(cat[x, e, h]) = W_x * x + (W_e * e + b) + W_h * h

and the middle term is the same for all members. `forecast_members` computes the encoder, the
features and those shares (for every lead at once) once, the noise's share of the top cell once per
member (the noise is constant over the leads), and then runs only the rest per member, on
channels-last tensors (the layout oneDNN's CPU convolutions are fastest in), and only up to the
requested output resolution. The result equals the member-by-member forward to float rounding (the
sums are taken in another order), about 1e-6 in log-rain.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.nn import functional as F

from dacast.ml.convlstm import check_inputs, encode, extrapolation_features
from dacast.ml.multires import MultiResNowcaster, pool_log_rain

__all__ = ["forecast_members"]

_CL = torch.channels_last


def _gate_step(gates: Tensor, c: Tensor, hidden: int) -> tuple[Tensor, Tensor]:
    """The LSTM update of `dacast.ml.ConvLSTMCell` from its gate pre-activations ``(B, 4·hidden, h, w)``
    (overwritten) and cell state ``c``: the new ``(h, c)``, channels-last."""
    i, f, o = gates[:, : 3 * hidden].sigmoid_().split(hidden, dim=1)
    c = gates[:, 3 * hidden :].tanh_().mul_(i).addcmul_(f, c).contiguous(memory_format=_CL)
    return torch.tanh(c).mul_(o), c


def _batch(x: Tensor, size: int) -> Tensor:
    """``(1, C, h, w)`` repeated to ``(size, C, h, w)``, channels-last."""
    return x.expand(size, -1, -1, -1).contiguous(memory_format=_CL)


def _up(model: MultiResNowcaster, level: int, h: Tensor) -> Tensor:
    """``model.fc_up[level](h)`` (a transposed convolution, then a leaky ReLU) with the ReLU in place."""
    conv, relu = model.fc_up[level]
    return F.leaky_relu_(conv(h), relu.negative_slope)


def _shared_share(weight: Tensor, bias: Tensor, features: Tensor | None, n_leads: int) -> Tensor:
    """``W_e * e + b`` of a convolution for every lead: ``(T, C_out, h, w)``, or the bias alone
    ``(T, C_out, 1, 1)`` when there is no extrapolation input (``features`` None; ``weight`` unused)."""
    if features is None:
        return bias.view(1, -1, 1, 1).expand(n_leads, -1, 1, 1)
    pad = weight.shape[-1] // 2
    return F.conv2d(features.contiguous(memory_format=_CL), weight, bias, padding=pad)


def _cell_shares(
    model: MultiResNowcaster, extrapolation: Tensor | None, lowest: int, n_leads: int
) -> tuple[dict[int, Tensor], dict[int, Tensor], dict[int, Tensor]]:
    """Per forecaster level ``i >= lowest``: the gate weights of the member's input (below the top:
    ``[up, h]`` together; at the top: the noise), of the hidden state, and the shared share
    ``(T, 4·hidden_i, H_i, W_i)`` (the extrapolation features' convolution plus the bias)."""
    cfg = model.config
    hid = cfg.hidden_channels
    n = len(hid)
    feats = [x[0] for x in extrapolation_features(model, extrapolation)]  # (T, C_i, H_i, W_i)
    w_x: dict[int, Tensor] = {}
    w_h: dict[int, Tensor] = {}
    shared: dict[int, Tensor] = {}
    for i in range(lowest, n):
        gates = model.fc_cells[i].gates
        n_x = cfg.noise_channels if i == n - 1 else hid[i]
        wx, we, wh = gates.weight.split([n_x, hid[i] if feats else 0, hid[i]], dim=1)
        w_x[i] = wx if i == n - 1 else torch.cat([wx, wh], dim=1)
        w_h[i] = wh
        shared[i] = _shared_share(we, gates.bias, feats[i] if feats else None, n_leads)
    return w_x, w_h, shared


def _head_share(
    model: MultiResNowcaster, extrapolation: Tensor | None, resolution: int, n_leads: int
) -> tuple[Tensor, Tensor]:
    """The weights of output head ``resolution`` on the network's features, and its shared share
    ``(T, 1, H_k, W_k)`` (the pooled extrapolation's convolution plus the bias)."""
    head = model.heads[resolution]
    n_e = model.config.extra_channels if extrapolation is not None else 0
    w_feat, w_e = head.weight.split([head.weight.shape[1] - n_e, n_e], dim=1)
    pooled = pool_log_rain(extrapolation[0], 2**resolution) if extrapolation is not None else None
    return w_feat, _shared_share(w_e, head.bias, pooled, n_leads)


def forecast_members(
    model: MultiResNowcaster,
    past: Tensor,
    extrapolation: Tensor | None,
    noise: Tensor,
    *,
    resolution: int = 0,
    batch: int = 1,
    on_member: Callable[[int], None] | None = None,
) -> Tensor:
    """One forecast per latent-noise field, sharing everything that does not depend on the noise.

    Each member ``m`` equals ``model(past, extrapolation, stage=n_outputs - 1 - resolution,
    noise=noise[m:m+1])[0]`` to float rounding (module docstring); call it under `torch.inference_mode`.
    The shared shares are kept for all leads: ``T_out × 4·hidden_0 × H/2 × W/2`` floats at the finest
    level and a quarter of that at each coarser one (about 600 MB for 12 leads of 640×712, float32).

    Args:
        model: an ensemble `MultiResNowcaster` (``noise_channels > 0``), in eval mode.
        past: past frames ``(1, T_in, C_in, H, W)`` in log-rain space, H and W multiples of
            ``model.spatial_multiple``.
        extrapolation: extrapolation nowcast ``(1, T_out, C_extra, H, W)`` in log-rain space (iff the
            model uses it).
        noise: latent noise ``(M, noise_channels, H / 2**L, W / 2**L)``, one field per member
            (`MultiResNowcaster.sample_noise`).
        resolution: output ``k`` (``0 … n_outputs - 1``): the forecast at ``H / 2**k`` by ``W / 2**k``.
        batch: members per pass (on a CPU one at a time is fastest: 8 members of a 640×712 field took
            13.2 s one by one, 15.7 s two by two; a GPU wants more).
        on_member: called with the number of members done after each pass.

    Returns:
        Log-rain ``(M, T_out, 1, H / 2**k, W / 2**k)``, ``>= 0``, on ``past``'s device.
    """
    cfg = model.config
    if not model.is_ensemble:
        raise ValueError("forecast_members needs an ensemble network (noise_channels > 0)")
    n_leads = check_inputs(cfg, past, extrapolation, None)
    if past.shape[0] != 1:
        raise ValueError(f"past must hold one case (batch 1), got batch {past.shape[0]}")
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if not 0 <= resolution < cfg.n_outputs:
        raise ValueError(f"resolution must be in 0..{cfg.n_outputs - 1}, got {resolution}")
    f = cfg.spatial_multiple
    want = (cfg.noise_channels, past.shape[-2] // f, past.shape[-1] // f)
    if noise.ndim != 4 or tuple(noise.shape[1:]) != want:
        raise ValueError(f"noise must be (M, {', '.join(map(str, want))}), got {tuple(noise.shape)}")
    hid = cfg.hidden_channels
    n = len(hid)
    lowest = min(resolution, n - 1)  # the finest level whose cell runs
    pad = cfg.kernel_size // 2

    encoded = encode(model, past)
    w_x, w_h, shared = _cell_shares(model, extrapolation, lowest, n_leads)
    w_head, head_shared = _head_share(model, extrapolation, resolution, n_leads)
    head_pad = model.heads[resolution].padding

    members = []
    for m in range(0, noise.shape[0], batch):
        nb = noise[m : m + batch]
        states = [(_batch(h, len(nb)), _batch(c, len(nb))) for h, c in encoded]
        noise_share = F.conv2d(nb.contiguous(memory_format=_CL), w_x[n - 1], padding=pad)
        leads = []
        for t in range(n_leads):
            up: Tensor | None = None
            out: Tensor | None = None
            for i in reversed(range(lowest, n)):
                h, c = states[i]
                if i == n - 1:
                    gates = F.conv2d(h, w_h[i], padding=pad) + noise_share
                else:
                    assert up is not None
                    gates = F.conv2d(torch.cat([up, h], dim=1), w_x[i], padding=pad)
                states[i] = _gate_step(gates.add_(shared[i][t]), c, hid[i])
                if i == n - 1 and resolution == n:
                    out = states[i][0]
                if i >= resolution:
                    up = _up(model, i, states[i][0])
                    if i == resolution:
                        out = up
            assert out is not None
            leads.append(F.softplus(F.conv2d(out, w_head, padding=head_pad).add_(head_shared[t])))
        members.append(torch.stack(leads, dim=1).contiguous())
        if on_member is not None:
            on_member(m + len(nb))
    return torch.cat(members)
