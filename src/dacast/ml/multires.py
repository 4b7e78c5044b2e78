"""Multi-resolution, progressively trained ConvLSTM nowcaster (after RIKEN's GSMaP nowcast design).

The generator is `dacast.ml.ConvLSTMNowcaster`'s encoder–forecaster (same
levels, cells, down/up-sampling and log-rain space ``z = log(1 + R)``, R in
mm/h; see `dacast.ml.convlstm`), but its decoder emits the forecast at
``n_outputs`` resolutions: output ``k`` (``k = 0 … n_outputs-1``) is
``(B, T_out, 1, H / 2**k, W / 2**k)``, finest first. Training goes from coarse
to fine (progressive growing, Karras et al. 2018): stage ``s`` computes and
trains only the coarsest ``s + 1`` outputs, and the newest (finest active)
output is faded in from the upsampled next-coarser one.

Where the heads sit (``L = len(hidden_channels)`` levels; the forecaster cell of
level ``l`` works at ``H / 2**(l+1)`` and its transposed convolution
``up_l`` brings it to ``H / 2**l``):

* output ``k < L``: a 3×3 convolution head on the output of ``up_k`` (size
  ``H / 2**k``); output 0 is thus the existing model's full-size head;
* output ``k = L`` (only when ``n_outputs = L + 1``): a head on the top cell's
  hidden state itself (size ``H / 2**L``).

**Ensembles** (``noise_channels > 0``, as DGMR, Ravuri et al. 2021): a latent noise field
``(B, noise_channels, H / 2**L, W / 2**L)``, standard normal, joins the input of the top forecaster
cell at every lead; one draw per ensemble member, so the members differ where the data leave the
future open. Such a model is trained with an ensemble loss (the fair CRPS, `dacast.ml.fair_crps_loss`)
and run with `sample_noise`; ``noise = 0`` gives its central member.

Every head ends in a softplus, so each output is ``>= 0`` in log-rain space and
``log_to_rain`` of it is a rain rate ``>= 0``. With ``use_extrapolation`` the
extrapolation nowcast feeds the forecaster cells exactly as in
`ConvLSTMNowcaster`, and, pooled to each output's resolution with
`pool_log_rain`, joins that output's head (the skip path that lets each head
start from the extrapolation).

Coarse fields are areal means of the *rain rate* (`pool_log_rain`): pooling in
rain space conserves the rain volume, matches what a coarse-resolution product
such as GSMaP reports, and keeps the intensity weights of
`dacast.ml.weighted_huber_loss` tied to real rain; pooling log-rain instead
would give ``mean log(1 + R) <= log(1 + mean R)`` (Jensen), a dry bias that grows
with the pooling factor.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from dacast.ml.convlstm import (
    ConvLSTMConfig,
    add_levels,
    check_inputs,
    encode,
    extrapolation_features,
    log_to_rain,
    rain_to_log,
)

__all__ = [
    "MultiResConfig",
    "MultiResNowcaster",
    "ProgressiveSchedule",
    "multires_targets",
    "pool_log_rain",
]


@dataclass(frozen=True, kw_only=True)
class MultiResConfig(ConvLSTMConfig):
    """Settings of `MultiResNowcaster`: those of `ConvLSTMConfig` (levels, leads, extrapolation input, seed)
    and the number of output resolutions.

    Attributes:
        n_outputs: number of output resolutions, ``1 … len(hidden_channels) + 1``; output ``k``
            is ``H / 2**k`` by ``W / 2**k`` (full, 1/2, 1/4, ...).
        noise_channels: channels of the latent noise input of the top forecaster cell (0: a
            deterministic network; > 0: an ensemble generator, see the module docstring).
    """

    hidden_channels: tuple[int, ...] = (16, 32, 64)
    n_outputs: int = 3
    noise_channels: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        n_max = len(self.hidden_channels) + 1
        if not 1 <= self.n_outputs <= n_max:
            raise ValueError(f"n_outputs must be in 1..{n_max} (len(hidden_channels) + 1), got {self.n_outputs}")
        if self.noise_channels < 0:
            raise ValueError(f"noise_channels must be >= 0, got {self.noise_channels}")


def pool_log_rain(z: Tensor, factor: int) -> Tensor:
    """Areal mean of the rain rate, in log-rain space: ``log(1 + avg_pool(exp(z) - 1))``.

    Args:
        z: log-rain fields ``(..., H, W)`` (e.g. ``(B, T, C, H, W)``), H and W multiples of ``factor``.
        factor: pooling factor (1: ``z`` is returned unchanged).

    Returns:
        Log-rain ``(..., H / factor, W / factor)``; a constant field stays that constant.
    """
    if factor == 1:
        return z
    h, w = z.shape[-2:]
    if h % factor or w % factor:
        raise ValueError(f"H and W must be multiples of {factor}, got {h}x{w}")
    rain = log_to_rain(z).reshape(-1, 1, h, w)
    pooled = F.avg_pool2d(rain, factor)
    return rain_to_log(pooled).reshape(*z.shape[:-2], h // factor, w // factor)


def _pool_mask(mask: Tensor, factor: int) -> Tensor:
    """Min-pooling of a 0/1 mask ``(..., H, W)``: a coarse pixel is valid iff all its fine pixels are."""
    if factor == 1:
        return mask
    h, w = mask.shape[-2:]
    m = mask.to(torch.float32).reshape(-1, 1, h, w)
    pooled = -F.max_pool2d(-m, factor)
    return pooled.reshape(*mask.shape[:-2], h // factor, w // factor).to(mask.dtype)


class MultiResNowcaster(nn.Module):
    """ConvLSTM encoder–forecaster with one output head per resolution (see module docstring).

    Args:
        config: the network's settings.
    """

    def __init__(self, config: MultiResConfig) -> None:
        super().__init__()
        self.config = config
        hid = config.hidden_channels
        n = len(hid)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            add_levels(self, config, top_extra=config.noise_channels)
            # Head k reads up_k's output (k < L) or the top cell's hidden state (k = L).
            feat = [hid[n - 1] if j == n else hid[max(j - 1, 0)] for j in range(config.n_outputs)]
            e = config.extra_channels if config.use_extrapolation else 0
            self.heads = nn.ModuleList(nn.Conv2d(feat[j] + e, 1, 3, padding=1) for j in range(config.n_outputs))

    @property
    def spatial_multiple(self) -> int:
        """H and W of the input must be multiples of this number."""
        return self.config.spatial_multiple

    @property
    def n_outputs(self) -> int:
        """Number of output resolutions (and of progressive stages)."""
        return self.config.n_outputs

    @property
    def is_ensemble(self) -> bool:
        """Whether the network takes latent noise (``config.noise_channels > 0``)."""
        return self.config.noise_channels > 0

    def sample_noise(
        self,
        batch: int,
        height: int,
        width: int,
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> Tensor:
        """Standard-normal latent noise ``(batch, noise_channels, height / 2**L, width / 2**L)`` for inputs of
        ``height × width`` pixels (multiples of `spatial_multiple`), float32; ``generator`` (a CPU generator)
        makes it reproducible. One batch entry per ensemble member."""
        f = self.spatial_multiple
        if height % f or width % f:
            raise ValueError(f"H and W must be multiples of {f}, got {height}x{width}")
        shape = (batch, self.config.noise_channels, height // f, width // f)
        return torch.randn(shape, generator=generator).to(device)

    def forward(
        self,
        past: Tensor,
        extrapolation: Tensor | None = None,
        *,
        n_leads: int | None = None,
        stage: int | None = None,
        alpha: float = 1.0,
        noise: Tensor | None = None,
    ) -> list[Tensor]:
        """Forecast at the active resolutions from past frames.

        Args:
            past: past frames ``(B, T_in, C_in, H, W)`` in log-rain space, oldest first;
                H and W multiples of `spatial_multiple`.
            extrapolation: extrapolation nowcast ``(B, T_out, C_extra, H, W)`` in log-rain space
                (required iff ``config.use_extrapolation``).
            n_leads: number of leads (default ``config.t_out``; with ``extrapolation``, its length).
            stage: progressive stage ``s`` in ``0 … n_outputs-1``: only the coarsest ``s + 1`` outputs
                are computed (the finer heads and up-sampling branches are not run); None: all outputs.
            alpha: fade-in weight in ``[0, 1]`` of the finest active output ``k``, returned as
                ``alpha · own_k + (1 - alpha) · nearest_up(out_{k+1})`` in log-rain space (nearest
                up-sampling preserves the coarse output's block means); < 1 needs two active outputs.
            noise: latent noise ``(B, noise_channels, H / 2**L, W / 2**L)`` (`sample_noise`), required
                iff ``config.noise_channels > 0``.

        Returns:
            The active outputs, finest first, in log-rain space, each ``>= 0``: with ``k0`` the finest
            active output (``n_outputs - 1 - stage``; 0 with ``stage=None``), entry ``j`` is
            ``(B, T_out, 1, H / 2**(k0+j), W / 2**(k0+j))``.
        """
        cfg = self.config
        n_leads = check_inputs(cfg, past, extrapolation, n_leads)
        if stage is not None and not 0 <= stage < cfg.n_outputs:
            raise ValueError(f"stage must be in 0..{cfg.n_outputs - 1} or None, got {stage}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        finest = 0 if stage is None else cfg.n_outputs - 1 - stage
        if alpha < 1.0 and finest == cfg.n_outputs - 1:
            raise ValueError("alpha < 1 needs a coarser output to fade from (stage >= 1)")
        n = len(cfg.hidden_channels)
        if (noise is not None) != self.is_ensemble:
            raise ValueError(f"noise must be {'given' if self.is_ensemble else 'None'} for this model")
        if noise is not None:
            b, _, _, h, w = past.shape
            want = (b, cfg.noise_channels, h // cfg.spatial_multiple, w // cfg.spatial_multiple)
            if tuple(noise.shape) != want:
                raise ValueError(f"noise must have shape {want}, got {tuple(noise.shape)}")

        states = encode(self, past)  # all levels: every coarse level reads the finer ones
        # Extrapolation features per level (B, T_out, C_i, H_i, W_i) and per active head (B, T_out, C_e, H_k, W_k).
        ext_feats = extrapolation_features(self, extrapolation)
        ext_heads: dict[int, Tensor] = {}
        if extrapolation is not None:
            ext_heads = {j: pool_log_rain(extrapolation, 2**j) for j in range(finest, cfg.n_outputs)}

        def head(j: int, feat: Tensor, t: int) -> Tensor:
            if ext_heads:
                feat = torch.cat([feat, ext_heads[j][:, t]], dim=1)
            return F.softplus(self.heads[j](feat))

        # Forecaster: cells at levels >= lowest, up-sampling at levels >= finest.
        lowest = min(finest, n - 1)
        outs: dict[int, list[Tensor]] = {j: [] for j in range(finest, cfg.n_outputs)}
        for t in range(n_leads):
            up: Tensor | None = None
            for i in reversed(range(lowest, n)):
                top_noise = noise if i == n - 1 else None
                parts = [p for p in (up, top_noise, ext_feats[i][:, t] if ext_feats else None) if p is not None]
                states[i] = self.fc_cells[i](torch.cat(parts, dim=1) if parts else None, states[i])
                if i == n - 1 and n in outs:
                    outs[n].append(head(n, states[i][0], t))
                if i >= finest:
                    up = self.fc_up[i](states[i][0])
                    if i in outs:
                        outs[i].append(head(i, up, t))
        result = [torch.stack(outs[j], dim=1) for j in range(finest, cfg.n_outputs)]

        if alpha < 1.0:
            coarse = result[1]
            up_coarse = F.interpolate(coarse.flatten(0, 1), scale_factor=2.0, mode="nearest").unflatten(
                0, coarse.shape[:2]
            )
            result[0] = alpha * result[0] + (1.0 - alpha) * up_coarse
        return result


@dataclass(frozen=True, kw_only=True)
class ProgressiveSchedule:
    """Coarse-to-fine training schedule: which stage, and which fade-in ``alpha``, at a global step.

    Stage ``s`` lasts ``steps_per_stage[s]`` steps (coarsest first; pass ``stage=s`` to
    `MultiResNowcaster.forward`). In every stage after the first, ``alpha`` ramps linearly from
    0 to 1 over its first ``fade_steps`` steps, then stays 1; stage 0 always has ``alpha = 1``.

    Attributes:
        steps_per_stage: number of training steps of each stage, coarsest first (all >= 1).
        fade_steps: length of the fade-in (0: none); at most the length of every stage after the first.
    """

    steps_per_stage: tuple[int, ...]
    fade_steps: int = 0

    def __post_init__(self) -> None:
        if not self.steps_per_stage or min(self.steps_per_stage) < 1:
            raise ValueError(f"steps_per_stage must be non-empty positive ints, got {self.steps_per_stage}")
        if self.fade_steps < 0:
            raise ValueError(f"fade_steps must be >= 0, got {self.fade_steps}")
        later = self.steps_per_stage[1:]
        if later and self.fade_steps > min(later):
            raise ValueError(
                f"fade_steps ({self.fade_steps}) must not exceed the length of any stage after the first ({min(later)})"
            )

    @property
    def n_stages(self) -> int:
        """Number of stages."""
        return len(self.steps_per_stage)

    @property
    def total_steps(self) -> int:
        """Steps until the last stage ends (the schedule then stays at the last stage, ``alpha = 1``)."""
        return sum(self.steps_per_stage)

    def at(self, step: int) -> tuple[int, float]:
        """``(stage, alpha)`` at global training step ``step >= 0`` (0-based)."""
        if step < 0:
            raise ValueError(f"step must be >= 0, got {step}")
        start = 0
        for s, length in enumerate(self.steps_per_stage):
            if step < start + length:
                if s == 0 or self.fade_steps == 0:
                    return s, 1.0
                return s, min(1.0, (step - start) / self.fade_steps)
            start += length
        return self.n_stages - 1, 1.0


def multires_targets(
    rain_log: Tensor, n_outputs: int, mask: Tensor | None = None
) -> list[tuple[Tensor, Tensor | None]]:
    """The truth at each output resolution, finest first.

    Fields are pooled in *rain* space (`pool_log_rain`: areal-mean rain rate, turned back into
    log-rain), not log space: the coarse truth then is the rain a coarse-resolution product reports
    and conserves the rain volume, whereas the mean of log-rain is biased dry (Jensen).

    Args:
        rain_log: truth ``(B, T, 1, H, W)`` in log-rain space (any leading axes), finite;
            H and W multiples of ``2**(n_outputs-1)``.
        n_outputs: number of resolutions (>= 1); level ``k`` is pooled by ``2**k``.
        mask: valid-data mask, same shape as ``rain_log`` (0/1 float or bool); None: all valid.

    Returns:
        ``n_outputs`` pairs ``(target_k, mask_k)``: ``target_k`` ``(B, T, 1, H / 2**k, W / 2**k)``
        log-rain; ``mask_k`` the same shape and dtype as ``mask``, min-pooled (a coarse pixel is valid
        only if all its fine pixels are), or None. Level 0 is the input itself.
    """
    if n_outputs < 1:
        raise ValueError(f"n_outputs must be >= 1, got {n_outputs}")
    if rain_log.ndim < 2:
        raise ValueError(f"rain_log must be (..., H, W), got shape {tuple(rain_log.shape)}")
    f_max = 2 ** (n_outputs - 1)
    h, w = rain_log.shape[-2:]
    if h % f_max or w % f_max:
        raise ValueError(f"H and W must be multiples of {f_max} for {n_outputs} outputs, got {h}x{w}")
    if mask is not None and mask.shape != rain_log.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} differs from rain_log shape {tuple(rain_log.shape)}")
    return [(pool_log_rain(rain_log, 2**k), None if mask is None else _pool_mask(mask, 2**k)) for k in range(n_outputs)]
