"""Generate ``dapper_letkf_reference.npz``: DAPPER's LETKF analyses for fixed inputs.

Run by hand, never by the test suite (it needs ``dapper==1.7.1``, the ``bench`` extra)::

    python tests/regression/make_dapper_letkf_reference.py

Reference implementation: DAPPER 1.7.1 (nansencenter/DAPPER),
``dapper/da_methods/ensemble.py::local_analyses`` (the local analyses of
``LETKF.assimilate``, Hunt et al. 2007, symmetric square root via
``EnKF_analysis(..., "Sqrt")``) with the localization set-up of
``dapper/tools/localization.py::nd_Id_localization((Nx,), (1,))``: direct
observations of a periodic 1-D domain, one grid point per batch, taper "GC"
with ``loc_rad = 4`` (half-width 1.82 * loc_rad, coefficients <= 1e-3 dropped),
and ``R = dapper.tools.matrices.CovMat(r2, "diag")``; no adaptive inflation
(``xN=None``) and no post-processing.

The prior is a Lorenz-96-like ensemble: members start as perturbed copies of a
spun-up truth and are run for 0.5 time units with DAPPER's own Lorenz-96 step,
so their anomalies are flow dependent. Observations are truth plus noise.

Cases (Nx = 40): ``n20`` (N = 20, unit obs error), ``n7`` (N = 7, fewer
members than local observations), ``n20_r`` (N = 20, obs error std 0.5) and
``n10_sparse`` (N = 10, every other point observed, obs error std varying
between 0.5 and 1.5).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

NX = 40
LOC_RAD = 4.0
SEED = 20240601
OUT = Path(__file__).with_name("dapper_letkf_reference.npz")


def _l96_ensemble(rng: np.random.Generator, n_members: int) -> tuple[np.ndarray, np.ndarray]:
    from dapper.mods.Lorenz96 import step

    dt = 0.05
    truth = 8.0 + rng.standard_normal(NX)
    for _ in range(400):  # spin-up: 20 time units
        truth = step(truth, 0.0, dt)
    ens = truth + 1.0 * rng.standard_normal((n_members, NX))
    for _ in range(10):  # 0.5 time units: flow-dependent anomalies
        ens = step(ens, 0.0, dt)
        truth = step(truth, 0.0, dt)
    return ens, truth


def _dapper_letkf(prior: np.ndarray, y: np.ndarray, obs_inds: np.ndarray, r2: np.ndarray) -> np.ndarray:
    from dapper.da_methods.ensemble import local_analyses
    from dapper.tools.localization import nd_Id_localization
    from dapper.tools.matrices import CovMat

    localizer = nd_Id_localization((NX,), (1,), obs_inds=obs_inds)
    batches, taperer = localizer(LOC_RAD, "x2y", "GC")
    R = CovMat(np.asarray(r2, dtype=float), "diag")
    E = prior.copy()  # local_analyses overwrites E in place
    Eo = prior[:, obs_inds].copy()
    E, _ = local_analyses(E, Eo, R, y.copy(), batches, taperer)
    return np.asarray(E)


def main() -> None:
    import dapper

    if dapper.__version__ != "1.7.1":
        raise SystemExit(f"expected dapper 1.7.1, found {dapper.__version__}")
    rng = np.random.default_rng(SEED)
    cases = {
        "n20": (20, np.arange(NX), np.ones(NX)),
        "n7": (7, np.arange(NX), np.ones(NX)),
        "n20_r": (20, np.arange(NX), np.full(NX, 0.5)),
        "n10_sparse": (10, np.arange(0, NX, 2), np.linspace(0.5, 1.5, NX // 2)),
    }
    arrays: dict[str, np.ndarray] = {"cases": np.array(sorted(cases)), "loc_rad": np.array(LOC_RAD)}
    for name, (n_members, obs_inds, obs_std) in cases.items():
        prior, truth = _l96_ensemble(rng, n_members)
        y = truth[obs_inds] + obs_std * rng.standard_normal(obs_inds.size)
        analysis = _dapper_letkf(prior, y, obs_inds, obs_std**2)
        arrays |= {
            f"{name}/prior": prior,
            f"{name}/y": y,
            f"{name}/obs_inds": obs_inds,
            f"{name}/obs_std": obs_std,
            f"{name}/analysis": analysis,
        }
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
