"""The BDA twin with its ensemble tiled on Dask workers equals the one-process run; lost workers; per-tile restart."""

from __future__ import annotations

import gc
import json
import os
from dataclasses import replace

import pytest
import torch
from dask.distributed import Client, LocalCluster
from test_wf_bda import tiny

from dacast.da.gridded import GriddedLETKFConfig
from dacast.obs.radar import RadarConfig
from dacast.workflow.bda.checkpoint import TILED_CHECKPOINT
from dacast.workflow.bda.run import run_bda_experiment, run_cycles
from dacast.workflow.bda.tiled import TiledEnsemble
from dacast.workflow.bda.tiled_metrics import transfer_bytes
from dacast.workflow.bda.tiled_run import parse_tiles, run_tiled_cycles, tile_spec
from dacast.workflow.twin.config import ConfigError

# 32x32 at 500 m; a radar reaching 6 km from the centre: its range edge runs through every tile
EDGE_RADAR = RadarConfig(max_range=6e3)


def config(stride: int = 1, **kw) -> object:
    letkf = GriddedLETKFConfig(localization=1.0, rtpp=0.5, weight_stride=stride)
    return tiny(dtype="float64", radar=EDGE_RADAR, letkf=letkf, **kw)


@pytest.fixture
def client(inprocess_dask: Client) -> Client:
    return inprocess_dask


@pytest.mark.parametrize(("stride", "tiles"), [(1, (2, 2)), (2, (1, 2)), (2, (2, 1)), (1, (3, 2))], ids=str)
def test_tiled_run_equals_the_one_process_run(client: Client, stride: int, tiles: tuple[int, int]) -> None:
    cfg = config(stride, forecast_every=2)
    single = run_cycles(cfg)
    tiled = run_tiled_cycles(cfg, client, tiles)
    assert tiled.cycle == single.cycle == cfg.cycles
    torch.testing.assert_close(tiled.ensemble.gather(), single.ensemble, rtol=0, atol=1e-10)
    for a, b in zip(single.records, tiled.records, strict=True):
        for key in ("rmse_forecast", "rmse_analysis", "spread_forecast", "spread_analysis", "rmse_free_run"):
            assert a[key] == pytest.approx(b[key], rel=0, abs=1e-10), key
        assert (a["n_obs_dbz"], a["n_obs_vr"]) == (b["n_obs_dbz"], b["n_obs_vr"])
    assert single.forecasts[0]["counts_forecast"] == tiled.forecasts[0]["counts_forecast"]
    # the analysis did something: it moved away from the forecast
    assert single.records[-1]["rmse_analysis"] != single.records[-1]["rmse_forecast"]


def test_float32_tiles_match_to_rounding(client: Client) -> None:
    cfg = replace(config(2), dtype="float32")
    single = run_cycles(cfg)
    tiled = run_tiled_cycles(cfg, client, (2, 2))
    torch.testing.assert_close(tiled.ensemble.gather(), single.ensemble, rtol=1e-4, atol=1e-4)


def _held(dask_scheduler) -> list[str]:
    """Keys a client holds, as the scheduler sees them."""
    return [str(k) for k, ts in dask_scheduler.tasks.items() if ts.who_wants]


def test_the_workers_hold_only_the_current_cycle_s_tiles(client: Client) -> None:
    cfg = config(1, cycles=4)
    held: dict[int, list[str]] = {}

    def on_cycle(state) -> None:
        gc.collect()  # what is only garbage does not count
        held[state.cycle] = client.run_on_scheduler(_held)

    run_tiled_cycles(cfg, client, (2, 2), on_cycle=on_cycle)
    for c in (2, 3, 4):
        # the initial tiles, earlier forecasts and analyses are gone (the initial ones stayed all run)
        stale = [k for k in held[c] if k.startswith("tile-")
                 or (k.split("-")[0] in ("forecast", "letkf") and int(k.split("-")[1]) < c - 1)]  # fmt: skip
        assert not stale, (c, stale)
        assert sum(k.startswith("letkf-") for k in held[c]) == 4  # the analysis the next cycle starts from


@pytest.mark.parametrize("tiles", [(1, 2), (2, 2)], ids=str)
def test_only_halos_move_between_workers(client: Client, tiles: tuple[int, int]) -> None:
    cfg = replace(config(1), grid=64, radar=RadarConfig(), members=6, cycles=1)
    # (1, 2): one tile per worker, everything a tile receives crosses workers; (2, 2): two tiles per
    # worker side by side, whose windows both read the corners of the other worker's tiles: sent once
    spec = tile_spec(cfg, tiles)
    start = torch.randn(6, 4, 64, 64, dtype=torch.float64).abs_() * 1e-3 + torch.tensor([0, 0, 90, 0.0]).view(
        1, 4, 1, 1
    )
    ens = TiledEnsemble.scatter(client, spec, start)
    before = transfer_bytes(client)
    ens.forecast(0)
    moved = transfer_bytes(client) - before
    # each of the two workers receives, per variable, the columns (rows) three model steps read of it
    # beyond its tiles on both sides (u 6 + 5, v 5 + 5, h 6 + 6, r 5 + 5 across x; 5 + 5, 6 + 5, 6 + 6,
    # 5 + 5 across y: 43 either way; the same 7 + 6 for every variable would be 52) x 64 x 6 members x 8 bytes
    assert moved == 2 * 43 * 64 * 6 * 8


def test_tiles_argument_and_layouts_are_checked() -> None:
    assert parse_tiles("2x3") == (2, 3)
    for bad in ("3", "0x2", "axb", "2x2x2"):
        with pytest.raises(ConfigError, match="--tiles"):
            parse_tiles(bad)
    with pytest.raises(ConfigError, match="use fewer tiles"):
        tile_spec(tiny(grid=16), (2, 1))  # 8 rows + a 13-row halo > 16


def _kill_worker_at(cluster_client: Client, address: str, cycle: int):
    def on_cycle(state) -> None:
        if state.cycle == cycle:
            try:
                cluster_client.run(os._exit, 1, workers=[address])
            except Exception:  # noqa: BLE001 - the worker dies while answering
                pass

    return on_cycle


def test_a_lost_worker_names_its_tile_and_the_run_resumes_identically(tmp_path, monkeypatch) -> None:
    cfg = config(2, cycles=5, checkpoint_every=2)
    reference = run_bda_experiment(cfg, tmp_path / "one", progress=False, plots=False)
    out = tmp_path / "tiled"
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as c,
    ):
        victim = sorted(c.ncores())[1]  # holds tiles 2 and 3 of a 2x2 layout
        original = run_tiled_cycles

        def failing(config, *, client, tiles, state=None, on_cycle=None, say=None):
            kill = _kill_worker_at(c, victim, 3)

            def hook(s) -> None:
                on_cycle(s)
                kill(s)

            return original(config, client, tiles, state=state, on_cycle=hook, say=say)

        monkeypatch.setattr("dacast.workflow.bda.tiled_run.run_tiled_cycles", failing)
        with pytest.raises(ConfigError, match=r"tile 2 \(rows 16:32, cols 0:16\).*--resume") as err:
            run_bda_experiment(cfg, out, client=c, tiles=(2, 2), progress=False, plots=False)
        assert "cycle 4" in str(err.value) and "\n" not in str(err.value)
        monkeypatch.undo()
        saved = torch.load(out / TILED_CHECKPOINT, weights_only=True)
        assert saved["cycle"] == 2  # the last complete checkpoint, not cycle 3
        resumed = run_bda_experiment(cfg, out, client=c, tiles=(2, 2), resume=True, progress=False, plots=False)
    one, two = reference.summary, resumed.summary
    for key in ("rmse_analysis", "rmse_forecast", "spread_analysis"):
        assert one[key] == pytest.approx(two[key], rel=1e-9), key
    assert json.loads((out / "summary.json").read_text())["tiles"] == [2, 2]
    for var in "uvhr":
        a = reference.dataset[f"analysis_mean_{var}"].values
        b = resumed.dataset[f"analysis_mean_{var}"].values
        assert abs(a - b).max() <= 1e-6 * max(1.0, abs(a).max())  # float32 fields of a float64 run


def test_resume_with_another_layout_is_refused(client: Client, tmp_path) -> None:
    cfg = config(2, cycles=2)
    run_bda_experiment(cfg, tmp_path, client=client, tiles=(2, 2), progress=False, plots=False)
    with pytest.raises(ConfigError, match="resume with --tiles 2x2"):
        run_bda_experiment(
            replace(cfg, cycles=3), tmp_path, client=client, tiles=(1, 2), resume=True, progress=False, plots=False
        )


def test_a_corrupt_tile_file_is_named_on_resume(client: Client, tmp_path) -> None:
    cfg = config(2, cycles=2)
    run_bda_experiment(cfg, tmp_path, client=client, tiles=(2, 2), progress=False, plots=False)
    bad = next((tmp_path / "tiles").glob("*/tile-0001.pt"))
    bad.write_bytes(b"not a tensor")
    with pytest.raises(ConfigError, match=r"cannot resume.*tile 1 \(rows 0:16, cols 16:32\)"):
        run_bda_experiment(
            replace(cfg, cycles=3), tmp_path, client=client, tiles=(2, 2), resume=True, progress=False, plots=False
        )
