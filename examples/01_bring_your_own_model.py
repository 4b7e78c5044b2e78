"""Bring your own model: a Kuramoto-Sivashinsky twin experiment with the LETKF.

The package has no Kuramoto-Sivashinsky model; this file writes one (a plain
class with ``n_state`` and ``step``, the `dacast.models.Model` protocol: no base
class, no registration) and runs a twin experiment through the one cycle engine
of `dacast.workflow.cycle`: a truth run, noisy observations of every 4th grid
point, a 20-member LETKF and, next to it, the same ensemble run freely (no DA)::

    python examples/01_bring_your_own_model.py            # 1000 cycles, about 5 s
    python examples/01_bring_your_own_model.py --quick    # 150 cycles, about 1 s
    python examples/01_bring_your_own_model.py --cycles 2000 --seed 3

Set-up: ``L = 22`` with 64 points, ``dt = 0.25`` (the chaotic regime of
Cvitanovic, Davidchack & Siminos 2010; leading Lyapunov exponent about 0.043
per time unit), ETDRK4 time stepping (Kassam & Trefethen 2005), one analysis
every 4 steps (1 time unit). Everything is float64; the random draws come from
explicit `torch.Generator`s, so a seed gives the same numbers every time.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
from torch import Tensor

from dacast.da import LETKFConfig, Localization
from dacast.models import advance
from dacast.obs import Grid, every_kth, observe
from dacast.workflow.cycle import FilterAnalyser, array_observations, cycle, model_forecast
from dacast.workflow.runtime import cpu_threads, torch_generator


class KuramotoSivashinsky:
    """``u_t = -u u_x - u_xx - u_xxxx`` on a periodic domain of length ``length``, ``n_state`` points.

    States have shape ``(*batch, n_state)`` (any leading axes are batch axes);
    time stepping is ETDRK4 in Fourier space (Kassam & Trefethen 2005, their
    ``kursiv.m``), its coefficients computed once per step length ``dt``.
    """

    def __init__(self, n_state: int = 64, length: float = 22.0) -> None:
        self.n_state = n_state
        k = 2 * math.pi / length * torch.arange(n_state // 2 + 1, dtype=torch.float64)  # wavenumbers (rfft)
        self.linear = k**2 - k**4  # Fourier symbol of -d_xx - d_xxxx
        nyquist = 2 * torch.arange(k.numel()) == n_state
        self.nonlinear = -0.5j * torch.where(nyquist, 0.0, k)  # -(u^2/2)_x; none in the Nyquist mode
        self._coefficients: dict[float, tuple[Tensor, ...]] = {}

    def etdrk4(self, dt: float) -> tuple[Tensor, ...]:
        """``(E, E2, Q, f1, f2, f3)`` for steps of ``dt``, each of shape ``(n_state // 2 + 1,)``."""
        if dt not in self._coefficients:
            hl = dt * self.linear
            r = torch.exp(1j * math.pi * (torch.arange(1, 33, dtype=torch.float64) - 0.5) / 32)  # contour points
            lr = hl[:, None] + r[None, :]
            e = torch.exp(lr)
            q = dt * ((torch.exp(lr / 2) - 1) / lr).mean(-1).real
            f1 = dt * ((-4 - lr + e * (4 - 3 * lr + lr**2)) / lr**3).mean(-1).real
            f2 = dt * ((2 + lr + e * (lr - 2)) / lr**3).mean(-1).real
            f3 = dt * ((-4 - 3 * lr - lr**2 + e * (4 - lr)) / lr**3).mean(-1).real
            self._coefficients[dt] = (torch.exp(hl), torch.exp(hl / 2), q, f1, f2, f3)
        return self._coefficients[dt]

    def step(self, x: Tensor, t: float, dt: float) -> Tensor:
        """Advance ``x`` (shape ``(*batch, n_state)``) from time ``t`` by ``dt`` (autonomous: ``t`` is unused)."""
        e, e2, q, f1, f2, f3 = (c.to(x.device) for c in self.etdrk4(dt))
        n = self.n_state

        def nonlinear(v: Tensor) -> Tensor:
            return self.nonlinear.to(x.device) * torch.fft.rfft(torch.fft.irfft(v, n=n) ** 2)

        v = torch.fft.rfft(x)
        nv = nonlinear(v)
        a = e2 * v + q * nv
        na = nonlinear(a)
        b = e2 * v + q * na
        nb = nonlinear(b)
        c = e2 * a + q * (2 * nb - nv)
        nc = nonlinear(c)
        v = e * v + f1 * nv + 2 * f2 * (na + nb) + f3 * nc
        return torch.fft.irfft(v, n=n)

    def grid(self) -> Grid:
        """Grid-point coordinates ``0..n-1`` on a ring (localization distances in grid spacings)."""
        return Grid.ring(self.n_state)


def rmse(estimate: Tensor, truth: Tensor) -> float:
    """Root-mean-square difference over the grid, both of shape ``(n_state,)``."""
    return float(torch.sqrt(((estimate - truth) ** 2).mean()))


def twin(cycles: int, seed: int, members: int = 20, obs_std: float = 0.2) -> dict[str, float]:
    """The twin experiment; time means (RMSE, spread) over the cycles after the first fifth."""
    model, dt, steps, burn_in = KuramotoSivashinsky(), 0.25, 4, cycles // 5
    gen_init, gen_obs = torch_generator(seed, 0), torch_generator(seed, 1)  # independent streams

    # Truth and initial members: independent random states, spun up together (one batch) onto the attractor.
    noise = 0.5 * torch.randn(members + 1, model.n_state, generator=gen_init, dtype=torch.float64)
    states = advance(model, noise - noise.mean(-1, keepdim=True), 800, dt)  # 200 time units
    x, ensemble = states[0], states[1:]

    # The truth at every analysis time (cycle c is valid at (c + 1) * steps * dt) and its observations.
    truth = []
    for c in range(cycles):
        x = advance(model, x, steps, dt, t0=c * steps * dt)
        truth.append(x)
    operator = every_kth(model.n_state, 4, error_std=obs_std)
    y = observe(torch.stack(truth), operator, gen_obs)

    # The LETKF through the package's cycle engine; the free run uses the same forecast next to it.
    forecast = model_forecast(model, steps, dt)
    letkf = LETKFConfig(localization=Localization(length=8.0), inflation=1.05)  # length in grid spacings
    analyser = FilterAnalyser(letkf, grid=model.grid())
    observations = array_observations(y, operator)
    free = ensemble
    analysis_rmse, free_rmse, spread = [], [], []
    for step in cycle(ensemble, forecast=forecast, observations=observations, analyse=analyser, cycles=range(cycles)):
        if step.failure:
            raise RuntimeError(step.failure)
        free = forecast(free, step.cycle)
        if step.cycle >= burn_in:
            analysis_rmse.append(rmse(step.analysis.mean, truth[step.cycle]))
            free_rmse.append(rmse(free.mean(0), truth[step.cycle]))
            spread.append(float(step.analysis.spread.pow(2).mean().sqrt()))
    return {
        "analysis_rmse": sum(analysis_rmse) / len(analysis_rmse),
        "analysis_spread": sum(spread) / len(spread),
        "free_rmse": sum(free_rmse) / len(free_rmse),
        "obs_error_std": obs_std,
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the twin and print its numbers; return them (``analysis_rmse``, ``free_rmse``, ... as in `twin`)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=1000, help="analysis cycles, 1 time unit apart (default 1000)")
    parser.add_argument("--quick", action="store_true", help="150 cycles: a few seconds")
    parser.add_argument("--seed", type=int, default=1, help="seed of the initial states and the observations")
    args = parser.parse_args(argv)
    cycles = 150 if args.quick else args.cycles
    start = time.perf_counter()
    with cpu_threads(1):  # 64 points: one thread is fastest (no hand-off between threads)
        result = twin(cycles, args.seed)
    print(
        f"Kuramoto-Sivashinsky (L = 22, 64 points), 20-member LETKF, {cycles} cycles "
        f"({time.perf_counter() - start:.1f} s), time means after the first fifth:\n"
        f"  analysis RMSE  {result['analysis_rmse']:.3f}  (spread {result['analysis_spread']:.3f})\n"
        f"  free-run RMSE  {result['free_rmse']:.3f}\n"
        f"  obs error std  {result['obs_error_std']:.3f}"
    )
    return result


if __name__ == "__main__":
    main()
