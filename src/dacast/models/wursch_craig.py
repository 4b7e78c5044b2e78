"""The Würsch & Craig (2014) convective-scale model, extended to two dimensions.

A modified shallow-water model: winds ``u, v``, fluid height ``h`` and a
dimensionless rain mass ``r`` on a periodic Arakawa C-grid. Convection is a
conditional instability: where ``h`` exceeds ``hc`` the geopotential drops to
the constant ``phi_c``, so converging air keeps rising; where ``h`` exceeds
``hr`` and the flow converges rain is produced; rain weighs the column down
(``gamma * r`` in the pressure gradient), spreads out and decays at the rate
``alpha``. Small random convergence perturbations of the wind trigger cells
that grow, move and decay. Equations, parameter sources, the 2-D extension
and the numerics are in ``docs/bda_model.md``.

States are ``(member, var, y, x)`` with ``var`` = ``u, v, h, r`` (m/s, m/s, m,
dimensionless); ``u[j, i]`` lives on the east face of cell ``(j, i)``,
``v[j, i]`` on its north face, ``h`` and ``r`` at the centre. The flat form
used by `Model.step` is ``(*batch, 4 * ny * nx)`` laid out ``(var, y, x)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor

from dacast.models.wursch_craig_trigger import MASK31, NOISE_QUANTUM, default_chunk, hash31, noise_patches

_R_MIN = 1e-12  # rain below this is set to 0
#: Cells (Chebyshev distance) one model step reaches: a change spreads at most this far per step.
STENCIL_RADIUS = 2
#: The cells one step reads, per variable: ``STEP_READS[b][a] = (dy0, dy1, dx0, dx1)`` says that the new
#: value of variable ``b`` (``u, v, h, r``) at cell ``(j, i)`` depends on variable ``a`` at rows
#: ``j + dy0 .. j + dy1`` and columns ``i + dx0 .. i + dx1`` only (the bounding box of what `_advance`
#: reads, every branch of its thresholds and upwinding included). ``u`` lives on east faces and ``v``
#: on north faces, so the box is lopsided: ``u`` reads ``h`` two cells east but one west.
STEP_READS: tuple[tuple[tuple[int, int, int, int], ...], ...] = (
    ((-1, 1, -1, 1), (-1, 0, 0, 1), (-1, 1, -1, 2), (0, 0, 0, 1)),  # u <- u, v, h, r
    ((0, 1, -1, 0), (-1, 1, -1, 1), (-1, 2, -1, 1), (0, 1, 0, 0)),  # v <- u, v, h, r
    ((-1, 1, -2, 1), (-2, 1, -1, 1), (-2, 2, -2, 2), (-1, 1, -1, 1)),  # h <- u, v, h, r
    ((-1, 1, -2, 1), (-2, 1, -1, 1), (-2, 2, -2, 2), (-1, 1, -1, 1)),  # r <- u, v, h, r
)


@dataclass(frozen=True, kw_only=True)
class WurschCraigConfig:
    """Grid, physical constants, time step and stochastic triggering.

    Physical defaults follow Würsch & Craig (2014) and the public large-ensemble
    configuration of the model (Ruckstuhl & Janjić 2018; Tempest et al. 2023);
    the 2-D noise rate is this package's choice. See ``docs/bda_model.md``.
    """

    ny: int = 256
    nx: int = 256
    dx: float = 500.0  # m, grid spacing (both directions)
    dt: float = 10.0  # s, model step (forward-backward; divides 30 s)
    g: float = 10.0  # m s^-2
    H0: float = 90.0  # m, resting fluid height
    hc: float = 90.02  # m, cloud threshold: above it the geopotential is phi_c
    hr: float = 90.4  # m, rain threshold
    phi_c: float = 899.77  # m^2 s^-2, geopotential above hc (< g * hc: conditional instability)
    gamma: float = 900.0  # m^2 s^-2 per unit r, negative buoyancy of rain (c^2 = g H0)
    alpha: float = 1.4e-4  # s^-1, rain removal rate (half-life ~ 83 min)
    beta: float = 0.1  # dimensionless, rain production per unit convergence x time
    ku: float = 3000.0  # m^2 s^-1, diffusion of u, v
    kh: float = 3000.0  # m^2 s^-1, diffusion of h (= ku: see docs, stability)
    kr: float = 10.0  # m^2 s^-1, diffusion of r
    noise_amplitude: float = 0.02  # m s^-1, peak convergent wind of one perturbation
    noise_radius: float = 1500.0  # m, Gaussian length scale of one perturbation
    noise_rate: float = 1e-10  # perturbations per m^2 per s (about 16 per step on 256x256 at dt = 10 s)
    initial_h_std: float = 1e-3  # m, std of the white height perturbations of `initial_state`
    background_u: float = 0.0  # m/s, uniform steering wind of `initial_state` (x direction)
    background_v: float = 0.0  # m/s, uniform steering wind of `initial_state` (y direction)

    def __post_init__(self) -> None:
        if self.ny < 8 or self.nx < 8:
            raise ValueError(f"grid must be at least 8x8, got {self.ny}x{self.nx}")
        for name in ("dx", "dt", "g", "H0"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("alpha", "beta", "ku", "kh", "kr", "noise_amplitude", "noise_rate", "initial_h_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not self.H0 < self.hc < self.hr:
            raise ValueError(f"need H0 < hc < hr, got {self.H0}, {self.hc}, {self.hr}")
        if self.noise_radius <= 0:
            raise ValueError(f"noise_radius must be positive, got {self.noise_radius}")


@dataclass(frozen=True, eq=False)
class WurschCraig:
    """Batched 2-D Würsch-Craig model; meets `dacast.models.Model`.

    ``step`` is deterministic; ``forecast`` adds the stochastic triggering,
    a deterministic function of ``(seed, global member index, global step index)``.
    """

    config: WurschCraigConfig = field(default_factory=WurschCraigConfig)
    VARS = ("u", "v", "h", "r")

    @property
    def n_var(self) -> int:
        """Number of variables (4)."""
        return 4

    @property
    def shape(self) -> tuple[int, int]:
        """Grid shape ``(ny, nx)``."""
        return (self.config.ny, self.config.nx)

    @property
    def n_state(self) -> int:
        """Length of the flat state, ``4 * ny * nx``."""
        return 4 * self.config.ny * self.config.nx

    # ------------------------------------------------------------------ dynamics
    def _advance(self, u: Tensor, v: Tensor, h: Tensor, r: Tensor, dt: float) -> None:
        """One forward-backward step, in place, on ``(k, ny, nx)`` fields."""
        c = self.config
        idx = 1.0 / c.dx
        idx2 = idx * idx

        def rx(a: Tensor, s: int) -> Tensor:
            return torch.roll(a, s, dims=-1)

        def ry(a: Tensor, s: int) -> Tensor:
            return torch.roll(a, s, dims=-2)

        # diffusion of h first (split: diffuse, then a forward-backward gravity-wave step
        # on the diffused fields; stable for equal u and h diffusion up to c dt / dx = 1/sqrt(2))
        h_e, h_w, h_n, h_s = rx(h, -1), rx(h, 1), ry(h, -1), ry(h, 1)
        lap = h_e.add_(h_w).add_(h_n).add_(h_s).sub_(h, alpha=4.0)
        h.add_(lap, alpha=c.kh * dt * idx2)
        del lap, h_e, h_w, h_n, h_s

        # geopotential of the diffused height + rain weight, at centres
        phi = torch.where(h > c.hc, torch.full_like(h, c.phi_c), h * c.g)
        phi.add_(r, alpha=c.gamma)

        # momentum: u at east faces, v at north faces
        u_e, u_w, u_n, u_s = rx(u, -1), rx(u, 1), ry(u, -1), ry(u, 1)
        v_e, v_w, v_n, v_s = rx(v, -1), rx(v, 1), ry(v, -1), ry(v, 1)
        # v at u-points: mean of v(j,i), v(j,i+1), v(j-1,i), v(j-1,i+1)
        vbar = v + v_e + v_s + rx(v_s, -1)
        vbar.mul_(0.25)
        # u at v-points: mean of u(j,i), u(j,i-1), u(j+1,i), u(j+1,i-1)
        ubar = u + u_w + u_n + rx(u_n, 1)
        ubar.mul_(0.25)

        du = rx(phi, -1).sub_(phi).mul_(-idx)  # -dphi/dx
        du.addcmul_(u, u_e - u_w, value=-0.5 * idx)
        du.addcmul_(vbar, u_n - u_s, value=-0.5 * idx)
        lap = u_e.add_(u_w).add_(u_n).add_(u_s).sub_(u, alpha=4.0)
        du.add_(lap, alpha=c.ku * idx2)

        dv = ry(phi, -1).sub_(phi).mul_(-idx)
        dv.addcmul_(ubar, v_e - v_w, value=-0.5 * idx)
        dv.addcmul_(v, v_n - v_s, value=-0.5 * idx)
        lap = v_e.add_(v_w).add_(v_n).add_(v_s).sub_(v, alpha=4.0)
        dv.add_(lap, alpha=c.ku * idx2)
        del phi, lap, u_e, u_w, u_n, u_s, v_e, v_w, v_n, v_s, vbar, ubar

        u.add_(du, alpha=dt)
        v.add_(dv, alpha=dt)
        del du, dv

        # continuity with the new winds (flux form: the domain sum of h is conserved)
        fx = (h + rx(h, -1)).mul_(u)  # 2 * flux through east face
        fy = (h + ry(h, -1)).mul_(v)
        dh = fx - rx(fx, 1)
        dh.add_(fy).sub_(ry(fy, 1))
        del fx, fy

        # rain: upwind advection (advective form), production in converging air above hr,
        # removal, diffusion; r >= 0
        div = u - rx(u, 1)
        div.add_(v).sub_(ry(v, 1))
        div.mul_(idx)  # s^-1, at centres
        r_e, r_w, r_n, r_s = rx(r, -1), rx(r, 1), ry(r, -1), ry(r, 1)
        # upwind flux through east/north faces: max(u,0) r + min(u,0) r_e
        gx = u.clamp(min=0.0).mul_(r).addcmul_(u.clamp(max=0.0), r_e)
        gy = v.clamp(min=0.0).mul_(r).addcmul_(v.clamp(max=0.0), r_n)
        dr = gx - rx(gx, 1)
        dr.add_(gy).sub_(ry(gy, 1))
        dr.mul_(-idx)
        dr.addcmul_(r, div)  # advective form: -(div(r u) - r div u)
        dr.sub_(r, alpha=c.alpha)
        lap = r_e.add_(r_w).add_(r_n).add_(r_s).sub_(r, alpha=4.0)
        dr.add_(lap, alpha=c.kr * idx2)
        rain = (h > c.hr) & (div < 0)
        dr.sub_(div.mul_(rain), alpha=c.beta)
        del gx, gy, lap, r_e, r_w, r_n, r_s, div, rain

        h.add_(dh, alpha=-0.5 * idx * dt)
        # r >= 0; rain below 1e-12 is set to 0 (keeps float32 free of slow denormal numbers)
        torch.nn.functional.threshold_(r.add_(dr, alpha=dt), _R_MIN, 0.0)

    def step(self, x: Tensor, t: float, dt: float) -> Tensor:
        """One deterministic step (no triggering noise).

        Args:
            x: flat states, shape ``(*batch, 4 * ny * nx)`` laid out ``(var, y, x)``; not modified.
            t: time (s); the model is autonomous.
            dt: step length (s); stable up to about 10 s at the default constants.

        Returns:
            The states at ``t + dt``, same shape and dtype.
        """
        ny, nx = self.shape
        batch = x.shape[:-1]
        y = x.reshape(-1, 4, ny, nx).clone()
        self._advance(y[:, 0], y[:, 1], y[:, 2], y[:, 3], dt)
        return y.reshape(*batch, self.n_state)

    # ------------------------------------------------------------------ noise
    def _add_noise(
        self, u: Tensor, v: Tensor, seed: int, members: Tensor, step: int, patches, origin: tuple[int, int] = (0, 0)
    ) -> None:
        """Add the triggering perturbations of one step to ``u, v`` in place.

        ``u, v`` are ``(k, wy, wx)`` windows of the periodic grid whose cell ``(0, 0)`` is global
        cell ``origin`` (the whole grid by default); perturbations are drawn for the whole grid
        and the parts inside the window are added, as integer sums (exact in any order).
        """
        c = self.config
        ny, nx = self.shape
        k, wy, wx = u.shape
        lam = c.noise_rate * (ny * nx * c.dx * c.dx) * c.dt  # expected perturbations per member and step
        if lam <= 0 or c.noise_amplitude == 0:
            return
        n_slots = max(1, math.ceil(2.0 * lam))
        p_on = lam / n_slots
        dev = u.device
        slot = torch.arange(n_slots, device=dev, dtype=torch.int64)
        base = hash31(
            hash31(hash31(torch.full((1,), seed & MASK31, device=dev, dtype=torch.int64) + 7919) + members[:, None])
            + step * 2654435
            + slot[None, :] * 40503
        )  # (k, S)
        draws = [hash31(base + 97 * (i + 1)) for i in range(3)]
        on = draws[0].to(torch.float64) < p_on * 2.0**31
        iy = (draws[1] % ny)[on]
        ix = (draws[2] % nx)[on]
        m = torch.arange(k, device=dev, dtype=torch.int64)[:, None].expand(k, n_slots)[on]
        if m.numel() == 0:
            return
        du, dv, oy, ox = patches
        if (wy, wx) != (ny, nx):  # a window: only the perturbations whose patch can reach it
            reach = int(oy.abs().max()) if oy.numel() else 0
            near = (((iy - origin[0] + reach) % ny) < wy + 2 * reach) & (
                ((ix - origin[1] + reach) % nx) < wx + 2 * reach
            )
            iy, ix, m = iy[near], ix[near], m[near]
        ly = (iy[:, None] + oy - origin[0]) % ny  # window coordinates (>= wy: outside the window)
        lx = (ix[:, None] + ox - origin[1]) % nx
        inside = ((ly < wy) & (lx < wx)).reshape(-1)
        flat = (m[:, None] * (wy * wx) + ly * wx + lx).reshape(-1)[inside]
        acc = torch.zeros(k * wy * wx, dtype=torch.int32, device=dev)
        scale = c.noise_amplitude / NOISE_QUANTUM
        acc.index_put_((flat,), du.repeat(m.numel())[inside], accumulate=True)
        u.add_(acc.view(k, wy, wx).to(u.dtype), alpha=scale)
        acc.zero_()
        acc.index_put_((flat,), dv.repeat(m.numel())[inside], accumulate=True)
        v.add_(acc.view(k, wy, wx).to(v.dtype), alpha=scale)

    # ------------------------------------------------------------------ public runs
    def forecast(
        self,
        x: Tensor,
        seconds: float,
        *,
        seed: int | None,
        start_step: int = 0,
        member_offset: int = 0,
        chunk_members: int | None = None,
        origin: tuple[int, int] | None = None,
    ) -> Tensor:
        """Run every member ``seconds / dt`` steps with stochastic triggering.

        Member ``i`` of ``x`` is global member ``member_offset + i``; step ``j``
        of this call is global step ``start_step + j``. The noise depends only
        on ``(seed, global member, global step)``, so running members in
        chunks, or a forecast in pieces, gives bitwise the same result on the
        same device and dtype.

        With ``origin``, ``x`` is a window whose cell ``(0, 0)`` is global cell ``origin``: after ``n`` steps
        cells ``STENCIL_RADIUS * n`` inside its edges (where it is not the whole axis) equal the grid's forecast.

        Args:
            x: states, shape ``(k, 4, ny, nx)`` (a window: ``(k, 4, wy, wx)``, ``wy <= ny``, ``wx <= nx``);
                not modified.
            seconds: forecast length (s), a multiple of ``config.dt``.
            seed: noise seed; ``None`` runs without triggering noise.
            start_step: global index of the first step.
            member_offset: global index of member 0 of ``x``.
            chunk_members: members advanced together (default: `default_chunk`).

        Returns:
            States after the forecast, shape ``(k, 4, ny, nx)``, dtype and device of ``x``.
        """
        c = self.config
        ny, nx = self.shape
        fits = (
            x.ndim == 4
            and x.shape[1] == 4
            and (x.shape[2] <= ny and x.shape[3] <= nx if origin else x.shape[2:] == (ny, nx))
        )
        if not fits:
            raise ValueError(f"x must have shape (k, 4, {ny}, {nx}) (a window: at most that), got {tuple(x.shape)}")
        n_steps = round(seconds / c.dt)
        if n_steps < 0 or abs(n_steps * c.dt - seconds) > 1e-9 * max(1.0, abs(seconds)):
            raise ValueError(f"seconds must be a non-negative multiple of dt={c.dt}, got {seconds}")
        chunk = chunk_members or default_chunk(x)
        if chunk < 1:
            raise ValueError(f"chunk_members must be >= 1, got {chunk}")
        out = x.clone()
        patches = noise_patches(self.config, x.device) if seed is not None else None
        for lo in range(0, x.shape[0], chunk):
            hi = min(lo + chunk, x.shape[0])
            y = out[lo:hi]
            u, v, h, r = y[:, 0], y[:, 1], y[:, 2], y[:, 3]
            members = torch.arange(member_offset + lo, member_offset + hi, device=x.device, dtype=torch.int64)
            for j in range(n_steps):
                if seed is not None:
                    self._add_noise(u, v, seed, members, start_step + j, patches, origin or (0, 0))
                self._advance(u, v, h, r, c.dt)
        return out

    def perturb(self, x: Tensor, *, seed: int, start_step: int, n_steps: int, member_offset: int = 0) -> Tensor:
        """``x`` plus the triggering perturbations of global steps ``start_step .. start_step + n_steps - 1``.

        The same perturbations `forecast` adds one step at a time, all added at once (a learned
        model that takes a whole cycle in one step gets the cycle's triggering this way).

        Args:
            x: states, shape ``(k, 4, ny, nx)``; not modified.
            seed: noise seed.
            start_step: global index of the first step.
            n_steps: number of steps whose perturbations are added (>= 0).
            member_offset: global member index of member 0 of ``x``.

        Returns:
            The perturbed states, shape, dtype and device of ``x`` (only ``u`` and ``v`` change, m/s).
        """
        out = x.clone()
        patches = noise_patches(self.config, x.device)
        members = torch.arange(member_offset, member_offset + x.shape[0], device=x.device, dtype=torch.int64)
        for j in range(n_steps):
            self._add_noise(out[:, 0], out[:, 1], seed, members, start_step + j, patches)
        return out

    def initial_state(
        self,
        members: int,
        *,
        seed: int,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
    ) -> Tensor:
        """Fluid at height ``H0`` with tiny white height perturbations, moving with the background wind.

        A uniform wind is a steady solution on the periodic domain (Galilean
        invariance): it carries the cells that later form across the domain.

        Returns:
            States, shape ``(members, 4, ny, nx)``; ``u = background_u``, ``v = background_v``
            (m/s), ``r = 0``, ``h = H0 + N(0, initial_h_std^2)`` (m).
        """
        ny, nx = self.shape
        gen = torch.Generator().manual_seed(seed)
        x = torch.zeros((members, 4, ny, nx), dtype=torch.float64)
        x[:, 0] = self.config.background_u
        x[:, 1] = self.config.background_v
        x[:, 2] = self.config.H0 + self.config.initial_h_std * torch.randn((members, ny, nx), generator=gen)
        return x.to(dtype=dtype, device=device)

    def spinup(self, x: Tensor, seconds: float, *, seed: int) -> Tensor:
        """Forecast from ``x`` (``(k, 4, ny, nx)``) for ``seconds`` with noise, until convection has developed."""
        return self.forecast(x, seconds, seed=seed)
