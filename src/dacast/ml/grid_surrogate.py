"""A learned convective-scale model: a periodic residual CNN that advances Würsch-Craig states by one cycle.

`GridSurrogate` maps an ensemble of gridded states ``(member, var, y, x)`` (``u, v,
h, r`` in m/s, m/s, m and dimensionless rain) to the states one *cycle*
(``spec.cycle_seconds``, 30 s by default: three steps of the physics model) later,
in residual form::

    a = anchor(x)                                     (see below)
    x_next = a + delta_std * net((a - mean) / std),   r_next >= 0

Purely learned (``spec.physics`` None), the anchor is ``x + kicks``: the Würsch-Craig
model's own triggering perturbations of the cycle's steps (`WurschCraig.perturb`), drawn
from ``(seed, global member, global step)`` exactly as the physics model draws them, so
the surrogate's ensemble gets new convective cells from the same random forcing. As a
hybrid (``spec.physics`` the settings of a physics model, e.g. one with a wrong parameter)
the anchor is that model's 30-s forecast with the same triggering, and the network learns
its error. The network is local: ``layers``
3x3 convolutions with circular (periodic) padding; in 30 s a gravity wave travels
about two 500-m cells, so a receptive field of ``2 * layers + 1`` cells covers the
domain of dependence with room to spare. The increment is bounded softly
(``bound * tanh(. / bound)`` in units of ``delta_std``), which keeps a long free
run finite even where the network is asked about states it never saw.

The normalisation (per-variable mean, std and increment std) is fitted on the
training data and travels with the checkpoint; `load_grid_surrogate` refuses a
checkpoint made for another model (grid, step, triggering, resting height), cycle length,
variable set or corrected physics.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from dacast.atomic import write_atomic
from dacast.ml.digest import tensors_sha256
from dacast.models.wursch_craig import WurschCraig, WurschCraigConfig

VARIABLES = ("u", "v", "h", "r")
#: Written into every checkpoint, so that another program's file is refused by name.
FORMAT = "dacast.grid_surrogate/2"


class SurrogateMismatch(ValueError):
    """A checkpoint that does not fit the experiment (grid, cycle, variables, normalisation, format)."""


class NonFiniteForecast(RuntimeError):
    """The surrogate produced NaN or inf; the message names the members and the forecast step."""


@dataclass(frozen=True, kw_only=True)
class GridSurrogateSpec:
    """Architecture and the physical setting a gridded surrogate is made for.

    Attributes:
        model: the `WurschCraigConfig` fields of the model it emulates (grid, spacing, step, triggering,
            resting height: what its normalisation and kicks are made for).
        cycle_seconds: the time one network step advances (s), a multiple of ``model["dt"]``.
        channels: hidden channels of every convolution.
        layers: 3x3 convolutions (>= 2); receptive field ``2 * layers + 1`` cells.
        bound: soft bound of the normalised increment.
        variables: the state's variables, in order.
        physics: None for a purely learned model; else the `WurschCraigConfig` fields of a physics
            model (same grid, spacing and step) that runs the cycle first (the *anchor*), so the
            network learns its error (hybrid).
    """

    model: dict[str, Any]
    cycle_seconds: float = 30.0
    channels: int = 32
    layers: int = 4
    bound: float = 8.0
    variables: tuple[str, ...] = VARIABLES
    physics: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        config = WurschCraigConfig(**self.model)
        if self.channels < 1 or self.layers < 2:
            raise ValueError(f"need channels >= 1 and layers >= 2, got {self.channels}, {self.layers}")
        steps = self.cycle_seconds / config.dt
        if not (steps >= 1 and abs(steps - round(steps)) < 1e-9):
            raise ValueError(f"cycle_seconds ({self.cycle_seconds}) must be a multiple of the model step ({config.dt})")
        if not self.bound > 0:
            raise ValueError(f"bound must be positive, got {self.bound}")
        if tuple(self.variables) != VARIABLES:
            raise ValueError(f"variables must be {list(VARIABLES)}, got {list(self.variables)}")
        if self.physics is not None:
            base = WurschCraigConfig(**self.physics)
            if (base.ny, base.nx, base.dx, base.dt) != (config.ny, config.nx, config.dx, config.dt):
                raise ValueError("physics must have the surrogate's grid, spacing and model step")

    @staticmethod
    def for_model(
        config: WurschCraigConfig, cycle_seconds: float, *, base: WurschCraigConfig | None = None, **net: Any
    ) -> GridSurrogateSpec:
        """The spec for a surrogate of the physics model ``config`` stepping ``cycle_seconds``.

        ``base``: a physics model (same grid and step) the network corrects; None: purely learned.
        """
        physics = None if base is None else asdict(base)
        return GridSurrogateSpec(model=asdict(config), cycle_seconds=cycle_seconds, physics=physics, **net)

    @property
    def config(self) -> WurschCraigConfig:
        """The emulated model's settings."""
        return WurschCraigConfig(**self.model)

    @property
    def steps_per_cycle(self) -> int:
        """Physics-model steps (and triggering draws) per surrogate step."""
        return round(self.cycle_seconds / self.model["dt"])

    def setting(self) -> dict[str, Any]:
        """What a checkpoint must agree on with the experiment it is used in, flat (``model.ny``, ``physics.alpha``)."""
        out: dict[str, Any] = {f"model.{k}": v for k, v in self.model.items()}
        out["physics"] = "none" if self.physics is None else "hybrid"
        out |= {f"physics.{k}": v for k, v in (self.physics or {}).items()}
        return out | {"cycle_seconds": self.cycle_seconds, "variables": list(self.variables)}


class GridSurrogate(nn.Module):
    """The periodic residual CNN; meets `dacast.models.Model` and the Würsch-Craig ``forecast`` signature."""

    def __init__(self, spec: GridSurrogateSpec) -> None:
        super().__init__()
        self.spec = spec
        self.ny, self.nx = spec.model["ny"], spec.model["nx"]
        self.n_state = 4 * self.ny * self.nx
        c = spec.channels
        convs = [
            nn.Conv2d(4 if i == 0 else c, c, 3, padding=1, padding_mode="circular") for i in range(spec.layers - 1)
        ]
        body: list[nn.Module] = []
        for conv in convs:
            body += [conv, nn.GELU()]
        body.append(nn.Conv2d(c, 4, 3, padding=1, padding_mode="circular"))
        self.net = nn.Sequential(*body)
        # the part of the increment that is linear in the state (advection by the mean wind, gravity
        # waves) on the whole domain of dependence, beside the nonlinear body (thresholds, rain)
        k = 2 * spec.layers - 1
        self.linear = nn.Conv2d(4, 4, k, padding=k // 2, padding_mode="circular")
        for last in (body[-1], self.linear):
            nn.init.zeros_(last.weight)  # starts as persistence: x_next = x
            nn.init.zeros_(last.bias)  # type: ignore[arg-type]
        self.register_buffer("state_mean", torch.zeros(4))
        self.register_buffer("state_std", torch.ones(4))
        self.register_buffer("delta_std", torch.ones(4))
        self.physics = None if spec.physics is None else WurschCraig(WurschCraigConfig(**spec.physics))
        self._kicker = WurschCraig(spec.config)  # the triggering of the emulated model

    # ------------------------------------------------------------------ normalisation
    def fit_normalization(self, inputs: Tensor, targets: Tensor) -> None:
        """Per-variable statistics of training pairs ``(N, 4, ny, nx)`` (inputs with kicks, states a cycle later)."""
        x, y = inputs.double(), targets.double()
        dims = (0, 2, 3)
        self.state_mean.copy_(x.mean(dims))
        self.state_std.copy_(x.std(dims).clamp_min(1e-8))
        self.delta_std.copy_((y - x).std(dims).clamp_min(1e-9))

    def normalization(self) -> dict[str, list[float]]:
        """The normalisation as plain numbers (for the checkpoint's JSON)."""
        return {k: getattr(self, k).double().tolist() for k in ("state_mean", "state_std", "delta_std")}

    # ------------------------------------------------------------------ the step
    def normalized_increment(self, inputs: Tensor) -> Tensor:
        """Bounded network output ``(B, 4, ny, nx)`` (units of ``delta_std``, float32) for inputs ``(B, 4, ny, nx)``.

        The normalisation is float32 whatever the weights' type (see `compute_in`).
        """
        w = self.linear.weight
        mean, std = self.state_mean.float()[:, None, None], self.state_std.float()[:, None, None]
        z = ((inputs.to(device=w.device, dtype=torch.float32) - mean) / std).to(w.dtype)
        raw = (self.net(z) + self.linear(z)).float()
        b = self.spec.bound
        return b * torch.tanh(raw / b)

    def forward(self, inputs: Tensor) -> Tensor:
        """The corrected states ``(B, 4, ny, nx)`` from anchors ``inputs`` (see `anchor`); ``r >= 0``."""
        inc = self.delta_std.float()[:, None, None] * self.normalized_increment(inputs)
        out = inputs + inc.to(dtype=inputs.dtype, device=inputs.device)
        return torch.cat((out[:, :3], out[:, 3:].clamp_min(0.0)), dim=1)

    def compute_in(self, dtype: torch.dtype) -> GridSurrogate:
        """Run the convolutions in ``dtype`` (bfloat16 on a GPU), keeping the normalisation in float32; returns self."""
        self.net.to(dtype=dtype)
        self.linear.to(dtype=dtype)
        return self

    def kicks(self, x: Tensor, *, seed: int, start_step: int, member_offset: int = 0) -> Tensor:
        """``x`` ``(k, 4, ny, nx)`` plus the triggering of the cycle whose first model step is ``start_step``."""
        n = self.spec.steps_per_cycle
        return self._kicker.perturb(x, seed=seed, start_step=start_step, n_steps=n, member_offset=member_offset)

    def anchor(self, x: Tensor, *, seed: int | None, start_step: int, member_offset: int = 0) -> Tensor:
        """What the network corrects, one cycle after ``x`` ``(k, 4, ny, nx)``.

        The physics forecast (hybrid), or ``x`` plus the cycle's kicks (purely learned); ``seed``
        None: no triggering.
        """
        if self.physics is not None:
            c = self.spec
            return self.physics.forecast(
                x, c.cycle_seconds, seed=seed, start_step=start_step, member_offset=member_offset
            )
        if seed is None:
            return x
        return self.kicks(x, seed=seed, start_step=start_step, member_offset=member_offset)

    def forecast(
        self,
        x: Tensor,
        seconds: float,
        *,
        seed: int | None,
        start_step: int = 0,
        member_offset: int = 0,
        chunk_members: int | None = None,
    ) -> Tensor:
        """Run every member ``seconds`` (a multiple of the cycle) as the physics model's `forecast` does.

        Args:
            x: states, shape ``(k, 4, ny, nx)``; not modified.
            seconds: forecast length (s), a multiple of ``spec.cycle_seconds``.
            seed: triggering seed; ``None`` runs without it.
            start_step: global index of the first *physics* step (the noise stream is the physics model's).
            member_offset: global member index of member 0 of ``x``.
            chunk_members: members per network call (default 64).

        Returns:
            States after the forecast, shape ``(k, 4, ny, nx)``, dtype and device of ``x``.

        Raises:
            ValueError: wrong shape or a length that is not a whole number of cycles.
            NonFiniteForecast: the network produced NaN or inf.
        """
        s = self.spec
        if x.ndim != 4 or tuple(x.shape[1:]) != (4, self.ny, self.nx):
            raise ValueError(f"x must have shape (k, 4, {self.ny}, {self.nx}), got {tuple(x.shape)}")
        n_cycles = round(seconds / s.cycle_seconds)
        if n_cycles < 0 or abs(n_cycles * s.cycle_seconds - seconds) > 1e-9 * max(1.0, abs(seconds)):
            raise ValueError(f"this surrogate steps {s.cycle_seconds:g} s; cannot forecast {seconds:g} s")
        chunk = chunk_members or 64
        out = x.clone()
        with torch.no_grad():
            for lo in range(0, x.shape[0], chunk):
                y = out[lo : lo + chunk]
                for j in range(n_cycles):
                    step0 = start_step + j * s.steps_per_cycle
                    y = self(self.anchor(y, seed=seed, start_step=step0, member_offset=member_offset + lo))
                    if not bool(torch.isfinite(y).all()):
                        bad = (~torch.isfinite(y)).flatten(1).any(1).nonzero().flatten() + member_offset + lo
                        raise NonFiniteForecast(
                            f"the surrogate produced non-finite values (members {bad[:5].tolist()}, "
                            f"cycle step {j + 1} of {n_cycles})"
                        )
                out[lo : lo + chunk] = y
        return out

    def step(self, x: Tensor, t: float, dt: float) -> Tensor:
        """`Model` protocol: advance flat states ``(*batch, 4 * ny * nx)`` by one cycle ``dt``, no triggering."""
        if not math.isclose(dt, self.spec.cycle_seconds, rel_tol=1e-9):
            raise ValueError(f"this surrogate steps {self.spec.cycle_seconds:g} s, not {dt:g} s")
        if x.shape[-1] != self.n_state:
            raise ValueError(f"state must have {self.n_state} entries in its last axis, got {x.shape[-1]}")
        batch = x.shape[:-1]
        with torch.no_grad():
            y = x.reshape(-1, 4, self.ny, self.nx)
            y = self(self.anchor(y, seed=None, start_step=0))
        return y.reshape(*batch, self.n_state)


def build_grid_surrogate(spec: GridSurrogateSpec, seed: int = 0) -> GridSurrogate:
    """A fresh surrogate (persistence until trained); weights drawn from a generator seeded with ``seed``."""
    devices: list[int] = []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        return GridSurrogate(spec)


def state_dict_sha256(model: nn.Module) -> str:
    """SHA-256 of the weights and buffers in key order (`tensors_sha256`): the identity of a trained surrogate."""
    return tensors_sha256(*(value for _, value in sorted(model.state_dict().items())))


def save_grid_surrogate(model: GridSurrogate, path: str | Path, *, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``path.pt`` (format, spec, weights, normalisation) and ``path.json`` (spec, normalisation, metadata).

    Both files are written atomically. Returns the ``.pt`` path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pt, js = path.with_suffix(".pt"), path.with_suffix(".json")
    spec = asdict(model.spec) | {"variables": list(model.spec.variables)}
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    write_atomic(pt, lambda tmp: torch.save({"format": FORMAT, "spec": spec, "state_dict": state}, tmp))
    doc = {
        "format": FORMAT,
        "spec": spec,
        "normalization": model.normalization(),
        "weights_sha256": state_dict_sha256(model),
        **(metadata or {}),
    }
    write_atomic(js, lambda tmp: tmp.write_text(json.dumps(doc, indent=1, default=str) + "\n", encoding="utf-8"))
    return pt


def load_grid_surrogate(path: str | Path, expected: GridSurrogateSpec | None = None) -> GridSurrogate:
    """The surrogate saved by `save_grid_surrogate` (CPU, eval mode), read with ``weights_only=True``.

    Args:
        path: the ``.pt`` file (suffix optional).
        expected: the experiment's setting; a checkpoint for another grid, cycle length,
            variable set or triggering is refused.

    Raises:
        SurrogateMismatch: not a grid-surrogate checkpoint, unreadable, another setting, or a
            non-finite / non-positive normalisation; one line naming the file and what differs.
    """
    pt = Path(path).with_suffix(".pt")
    if not pt.is_file():
        raise SurrogateMismatch(f"no surrogate checkpoint at {pt}")
    try:
        blob = torch.load(pt, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many kinds for a corrupt or foreign file
        raise SurrogateMismatch(f"{pt} is not a readable surrogate checkpoint ({type(err).__name__})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise SurrogateMismatch(f"{pt} is not a gridded surrogate checkpoint of dacast")
    raw = dict(blob["spec"])
    known = {f.name for f in fields(GridSurrogateSpec)}
    try:
        spec = GridSurrogateSpec(**{k: (tuple(v) if k == "variables" else v) for k, v in raw.items() if k in known})
        model = GridSurrogate(spec)
        model.load_state_dict(blob["state_dict"])
    except (TypeError, ValueError, RuntimeError) as err:
        raise SurrogateMismatch(f"{pt} does not hold a valid surrogate: {' '.join(str(err).split())[:160]}") from None
    if expected is not None:
        mine, theirs = expected.setting(), spec.setting()
        keys = list(dict.fromkeys([*mine, *theirs]))
        if mine["physics"] != theirs["physics"]:  # purely learned vs hybrid: say that, not every parameter
            keys = [k for k in keys if not k.startswith("physics.")]
        diff = [f"{k} {theirs.get(k)} (need {mine.get(k)})" for k in keys if theirs.get(k) != mine.get(k)]
        if diff:
            raise SurrogateMismatch(f"{pt} was trained for another setting: {', '.join(diff)}")
    norm = torch.cat([model.state_mean, model.state_std, model.delta_std])
    if not bool(torch.isfinite(norm).all()) or not bool((model.state_std > 0).all() and (model.delta_std > 0).all()):
        raise SurrogateMismatch(f"{pt} has an invalid normalisation (non-finite or non-positive scales)")
    return model.eval()


__all__ = [
    "FORMAT",
    "VARIABLES",
    "GridSurrogate",
    "GridSurrogateSpec",
    "NonFiniteForecast",
    "SurrogateMismatch",
    "build_grid_surrogate",
    "load_grid_surrogate",
    "save_grid_surrogate",
    "state_dict_sha256",
]
