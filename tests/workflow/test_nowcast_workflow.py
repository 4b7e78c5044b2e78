"""`dacast.workflow.nowcast`: run configuration, training YAML, the shipped example, in-memory nowcasts."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from dacast.io import RadarReadError, list_events
from dacast.nowcast import ExtrapolationConfig, OpticalFlowConfig, TRECConfig
from dacast.workflow import ConfigError
from dacast.workflow.nowcast.config import (
    NowcastRunConfig,
    extrapolation_config,
    extrapolation_settings,
    load_train_yaml,
    parse_floats,
    train_config_from_dict,
    with_train_overrides,
)
from dacast.workflow.nowcast.output import score_dataset, scores_table
from dacast.workflow.nowcast.run import make_nowcast, run_nowcast, verify_nowcast

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "nowcast_train.yaml"


# ----------------------------------------------------------------------------- run configuration


def test_run_config_is_frozen_keyword_only_and_parses_the_time() -> None:
    config = NowcastRunConfig(source="mch", start="2015-05-15T16:30")
    assert config.start == np.datetime64("2015-05-15T16:30", "ns")
    assert config.method == "extrapolation" and config.n_leads is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.method = "persistence"  # type: ignore[misc]
    with pytest.raises(TypeError):
        NowcastRunConfig("mch", "2015-05-15T16:30")  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"source": "dwd"}, "unknown radar source 'dwd'; choose one of: mch, fmi, knmi"),
        ({"method": "steps"}, "unknown method 'steps'; choose one of: extrapolation, persistence, convlstm"),
        ({"motion": "lk"}, "unknown motion method 'lk'; choose one of: trec, farneback, dis"),
        ({"n_leads": 0}, "leads must be >= 1"),
        ({"past_frames": 1}, "too few past frames"),
        ({"start": "2015-05-15T16:32"}, "not on the 5-min grid"),
        ({"start": "noon"}, "ISO time"),
        ({"method": "convlstm", "members": 1}, "members must be >= 2 and <= 100, got 1"),
        ({"members": 5}, "members apply to method convlstm only, not extrapolation"),
        ({"checkpoint": Path("x.pt")}, "applies to method convlstm only"),
        ({"method": "persistence", "motion": "dis"}, "does not apply to persistence"),
        ({"thresholds": (0.0,)}, "thresholds must be positive"),
        ({"device": "gpu"}, "device must be one of auto, cpu, cuda"),
    ],
)
def test_run_config_errors(kwargs: dict[str, Any], fragment: str) -> None:
    base: dict[str, Any] = {"source": "mch", "start": "2015-05-15T16:30"}
    with pytest.raises(ConfigError) as err:
        NowcastRunConfig(**{**base, **kwargs})
    assert fragment in str(err.value)


def test_convlstm_without_a_checkpoint_runs_the_shipped_nowcaster(monkeypatch: pytest.MonkeyPatch) -> None:
    from dacast.ml import shipped_nowcaster
    from dacast.workflow.nowcast import config as config_module

    assert NowcastRunConfig(source="mch", start="2015-05-15T16:30", method="convlstm").checkpoint == shipped_nowcaster()

    def missing() -> Path:
        raise FileNotFoundError("the shipped nowcaster is missing from this installation (x/best.pt)")

    monkeypatch.setattr(config_module, "shipped_nowcaster", missing)
    with pytest.raises(ConfigError, match="missing from this installation .*; give --checkpoint PATH"):
        NowcastRunConfig(source="mch", start="2015-05-15T16:30", method="convlstm")


def test_parse_floats() -> None:
    assert parse_floats("1, 5", "--thresholds") == (1.0, 5.0)
    for bad in ("", "a,b", "1,-2", "nan"):
        with pytest.raises(ConfigError, match="--thresholds"):
            parse_floats(bad, "--thresholds")


# ----------------------------------------------------------------------------- nowcasts in memory


def test_persistence_nowcast_and_scores(radar_root: Path) -> None:
    config = NowcastRunConfig(source="mch", start="2015-05-15T16:30", method="persistence", n_leads=2, root=radar_root)
    ds, gaps = make_nowcast(config)
    assert gaps == ()
    assert ds["forecast"].dims == ("lead_time", "y", "x") and ds["forecast"].shape == (2, 640, 710)
    np.testing.assert_array_equal(ds["forecast"].values[1], ds["last_observed"].values)
    assert ds["forecast"].attrs["units"] == "mm h-1" and ds.attrs["projection"].startswith("+proj=somerc")
    assert list(ds["lead_time"].values) == [5.0, 10.0]
    assert str(ds["valid_time"].values[0])[:16] == "2015-05-15T16:35"
    scores = score_dataset(ds, thresholds=(1.0,), scales_km=(10.0,))
    valid_t0 = np.isfinite(ds["last_observed"].values)
    both = valid_t0 & np.isfinite(ds["observed"].values[0])
    assert int(scores["n_valid"][0]) == int(both.sum())
    header, rows = scores_table(scores)
    assert header == ["lead_time_min", "valid_time", "n_valid", "csi_1mmh", "fss_1mmh_10km", "mae_mmh"]
    assert rows[0][:2] == ["5", "2015-05-15 16:35"]


def test_missing_observations_become_nan_leads(radar_root: Path) -> None:
    """The event ends at 19:00: from t0 = 18:55 only the first of three leads is observed."""
    config = NowcastRunConfig(source="mch", start="2015-05-15T18:55", method="persistence", n_leads=3, root=radar_root)
    ds, gaps = make_nowcast(config)
    assert [str(t)[11:16] for t in gaps] == ["19:05", "19:10"]
    obs = ds["observed"].values
    assert np.isfinite(obs[0]).any() and not np.isfinite(obs[1:]).any()
    assert list(score_dataset(ds)["n_valid"].values[1:]) == [0, 0]


# ----------------------------------------------------------------------------- training YAML

TINY: dict[str, Any] = {
    "data": {
        "train": [{"source": "mch", "start": "2015-05-15T15:45", "end": "2015-05-15T16:15"}],
        "validation": [{"source": "mch", "start": "2015-05-15T16:20", "end": "2015-05-15T16:45"}],
    },
    "extrapolation": {"motion": "dis", "n_frames": 3},
    "model": {"t_in": 3, "t_out": 3, "hidden_channels": [4, 8], "use_extrapolation": True},
    "loss": {"adversarial_weight": 0.02},
    "training": {"crop_size": 32, "max_steps": 2, "device": "cpu", "betas": [0.5, 0.9]},
    "checkpoint_dir": "ck",
}


def _with(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(TINY)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    node[last] = value
    return data


def test_train_dict_builds_the_ml_configs() -> None:
    spec = train_config_from_dict(TINY)
    cfg = spec.config
    assert cfg.model.hidden_channels == (4, 8) and cfg.model.use_extrapolation
    assert cfg.betas == (0.5, 0.9) and cfg.crop_size == 32 and cfg.checkpoint_dir == Path("ck")
    assert isinstance(spec.extrapolation.motion, OpticalFlowConfig) and spec.extrapolation.motion.method == "dis"
    assert [r.n_frames for r in spec.train] == [7] and [r.n_frames for r in spec.validation] == [6]
    spec2 = with_train_overrides(spec, device="auto", max_steps=7, checkpoint_dir="elsewhere")
    assert (spec2.config.max_steps, spec2.config.device, spec2.config.checkpoint_dir) == (7, "auto", Path("elsewhere"))


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ({**TINY, "colour": "red"}, "unknown key 'colour' in the configuration"),
        (_with("model.depth", 3), "unknown key 'depth' in model"),
        (_with("model.hidden_channels", "big"), "model.hidden_channels must be a list"),
        (_with("model.t_in", 2.5), "model.t_in must be an integer"),
        (_with("loss.adversarial_weight", -0.1), "adversarial_weight must be >= 0"),
        (_with("training.device", "gpu"), "training.device must be one of auto, cpu, cuda"),
        (_with("training.crop_size", 30), "not a multiple of 4"),
        (_with("training.checkpoint_dir", "x"), "unknown key 'checkpoint_dir' in training"),
        (_with("samples.t_in", 3), "unknown key 't_in' in samples"),
        (_with("extrapolation.motion", "lk"), "unknown motion method 'lk'"),
        (_with("extrapolation.motion_options", {"block": 8}), "unknown key 'block'"),
        (_with("data.train", []), "data.train must be a non-empty list"),
        (_with("data.train.0.source", "dwd"), "unknown radar source 'dwd'"),
        (_with("data.train.0.start", "yesterday"), "data.train[0].start must be an ISO time"),
        (_with("data.train.0.end", "2015-05-15T15:00"), "end is before start"),
        (_with("data.validation.0.start", "2015-05-15T16:10"), "overlaps training range"),
        (_with("data.validation.0.start", "2015-05-15T16:40"), "has 2 frames; one sample needs t_in + t_out = 6"),
        ({k: v for k, v in TINY.items() if k != "checkpoint_dir"}, "missing the required key 'checkpoint_dir'"),
    ],
)
def test_train_dict_errors(data: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        train_config_from_dict(data)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_train_yaml_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_train_yaml(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_train_yaml(bad)
    with pytest.raises(ConfigError, match="max_steps"):
        with_train_overrides(train_config_from_dict(TINY), max_steps=0)


def test_extrapolation_settings_round_trip() -> None:
    for config in (
        ExtrapolationConfig(),
        ExtrapolationConfig(motion=TRECConfig(block=16), n_frames=4),
        ExtrapolationConfig(motion=OpticalFlowConfig(method="farneback", sigma=1.0), space="rain"),
    ):
        settings = extrapolation_settings(config)
        assert extrapolation_config(yaml.safe_load(yaml.safe_dump(settings))) == config


def test_example_yaml_trains_on_first_halves_only(radar_root: Path) -> None:
    """The shipped example: first half of every event for training and validation, second half never read."""
    spec = load_train_yaml(EXAMPLE)
    cfg = spec.config
    assert cfg.model.use_extrapolation and 0.01 <= cfg.loss.adversarial_weight <= 0.05
    assert cfg.loss.huber_weight > 0 and cfg.loss.nonlocal_weight > 0 and cfg.data_config.crop_size == 128
    step = np.timedelta64(5, "m")
    events = list_events(radar_root)
    assert len(events) == 4
    ranges = [*spec.train, *spec.validation]
    for ev in events:
        first_half_end = ev.start + (ev.n_expected // 2 - 1) * step
        mine = sorted(
            (r for r in ranges if r.source == ev.source and ev.start <= r.start <= ev.end), key=lambda r: r.start
        )
        assert mine, f"no training range for {ev}"
        assert mine[0].start == ev.start and mine[-1].end == first_half_end, ev
        for a, b in zip(mine, mine[1:], strict=False):
            assert b.start == a.end + step  # contiguous: the whole first half is used
    for r in ranges:  # and nothing outside the events
        assert sum(ev.source == r.source and ev.start <= r.start <= r.end <= ev.end for ev in events) == 1, r


# ----------------------------------------------------------------------------- damaged radar files


def _mch_window(root: Path, radar_root: Path, hhmms: list[str], damaged: dict[str, bytes]) -> Path:
    """Copies of the MeteoSwiss 2015-05-15 frames ``hhmms`` under ``root``, those in ``damaged`` replaced."""
    folder = root / "mch" / "20150515"
    folder.mkdir(parents=True)
    for hhmm in hhmms:
        name = f"AQC15135{hhmm}F_00005.801.gif"
        data = damaged[hhmm] if hhmm in damaged else (radar_root / "mch" / "20150515" / name).read_bytes()
        (folder / name).write_bytes(data)
    return root


def test_unreadable_observed_frame_is_named_and_not_scored(tmp_path: Path, radar_root: Path) -> None:
    """t0+10 is truncated and t0+15 has no file: the run goes on, names the file, scores neither lead."""
    gif = (radar_root / "mch" / "20150515" / "AQC151351640F_00005.801.gif").read_bytes()
    root = _mch_window(tmp_path / "radar", radar_root, ["1630", "1635", "1640"], {"1640": gif[:5000]})
    config = NowcastRunConfig(source="mch", start="2015-05-15T16:30", method="persistence", n_leads=3, root=root)
    ds, gaps = make_nowcast(config)
    assert [str(t)[11:16] for t in gaps] == ["16:40", "16:45"]
    result = run_nowcast(config, tmp_path / "out", plots=False)
    (bad,) = result.unreadable_observed
    assert bad.path == root / "mch" / "20150515" / "AQC151351640F_00005.801.gif"
    assert str(bad.time)[11:16] == "16:40" and str(bad.path) in bad.error and "\n" not in bad.error
    assert [str(t)[11:16] for t in result.missing_observed] == ["16:45"]
    assert result.scores is not None and list(result.scores["n_valid"].values[1:]) == [0, 0]
    again = verify_nowcast(result.paths.nowcast, tmp_path / "verify", plots=False)  # the file keeps the record
    assert again.unreadable_observed == result.unreadable_observed
    assert again.missing_observed == result.missing_observed


def test_no_readable_observed_frame(tmp_path: Path, radar_root: Path) -> None:
    root = _mch_window(tmp_path / "radar", radar_root, ["1630", "1635", "1640"], {"1635": b"", "1640": b"GIF89a"})
    config = NowcastRunConfig(source="mch", start="2015-05-15T16:30", method="persistence", n_leads=2, root=root)
    result = run_nowcast(config, tmp_path / "out", plots=False)
    assert result.scores is None and "observed" not in result.dataset and result.missing_observed == ()
    assert [u.path.name[8:12] for u in result.unreadable_observed] == ["1635", "1640"]


def test_unreadable_past_frame_is_named(tmp_path: Path, radar_root: Path) -> None:
    """Persistence reads one past frame; when it is corrupt the error names it (not just its time)."""
    root = _mch_window(tmp_path / "radar", radar_root, ["1630", "1635"], {"1630": b"GIF89a"})
    config = NowcastRunConfig(source="mch", start="2015-05-15T16:30", method="persistence", n_leads=1, root=root)
    with pytest.raises(RadarReadError) as err:
        make_nowcast(config)
    assert str(root / "mch" / "20150515" / "AQC151351630F_00005.801.gif") in str(err.value)
    assert "found 0; missing: 2015-05-15 16:30" in str(err.value)
