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
    """The LSTM update of `dacast.ml.ConvLSTMCell` from its gate pre-activations ``(1, 4·hidden, h, w)``."""
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
    feats = [x[0] for x in extrapolation_features(model, extrapolation)]  # (T, C_i, H_i, W_i)
    n_e = hid if feats else (0,) * n
    # Per level: the weights of the member-dependent inputs, and the shared share for every lead.
    w_x: dict[int, Tensor] = {}
    w_h: dict[int, Tensor] = {}
    shared: dict[int, Tensor] = {}
    for i in range(lowest, n):
        gates = model.fc_cells[i].gates
        n_x = cfg.noise_channels if i == n - 1 else hid[i]
        wx, we, wh = gates.weight.split([n_x, n_e[i], hid[i]], dim=1)
        w_x[i], w_h[i] = wx, wh
        shared[i] = _shared_share(we, gates.bias, feats[i] if feats else None, n_leads)
    if n - 1 > lowest:  # below the top, one convolution over [up, h]
        for i in range(lowest, n - 1):
            w_x[i] = torch.cat([w_x[i], w_h[i]], dim=1)
    head = model.heads[resolution]
    n_feat = head.weight.shape[1] - (cfg.extra_channels if extrapolation is not None else 0)
    w_head, w_head_e = head.weight.split([n_feat, head.weight.shape[1] - n_feat], dim=1)
    ext_head = pool_log_rain(extrapolation[0], 2**resolution) if extrapolation is not None else None
    head_shared = _shared_share(w_head_e, head.bias, ext_head, n_leads)

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
            leads.append(F.softplus(F.conv2d(out, w_head, padding=1).add_(head_shared[t])))
        members.append(torch.stack(leads, dim=1).contiguous())
        if on_member is not None:
            on_member(m + len(nb))
    return torch.cat(members)
