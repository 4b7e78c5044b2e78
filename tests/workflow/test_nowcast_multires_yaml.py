"""`dacast nowcast train` YAML for the multi-resolution nowcaster: ``model.kind``, ``training.schedule`` /
``resolution_weights``, twin pre-training data (``data.twin``) and fine-tuning (``training.init_from``)."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from typer.testing import CliRunner

from dacast.cli import app
from dacast.ml import ConvLSTMConfig, MultiResConfig, ProgressiveSchedule
from dacast.ml.nowcast_train_config import build_model
from dacast.workflow import ConfigError
from dacast.workflow.nowcast import train as train_module
from dacast.workflow.nowcast.config import load_train_yaml, train_config_from_dict
from dacast.workflow.nowcast.pretrain import TwinData, twin_arrays
from dacast.workflow.nowcast.train import train_from_spec

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

#: Twin-only pre-training of a tiny multires model: 2 sequences of 8 frames on 32^2, 3 steps, one per stage.
TWIN: dict[str, Any] = {
    "data": {"twin": {"sequences": 2, "frames": 8, "grid": 32, "seed": 0, "spinup_minutes": 10, "augment": True}},
    "extrapolation": {"motion": "dis", "n_frames": 3},
    "model": {
        "kind": "multires",
        "n_outputs": 3,
        "t_in": 3,
        "t_out": 3,
        "hidden_channels": [4, 8],
        "use_extrapolation": True,
    },
    "loss": {"adversarial_weight": 0.0, "nonlocal_weight": 0.1, "nonlocal_scales": [1, 2]},
    "samples": {"samples_per_epoch": 8},
    "training": {
        "crop_size": 32,
        "batch_size": 2,
        "max_steps": 3,
        "val_every": 3,
        "val_batches": 1,
        "device": "cpu",
        "schedule": {"steps_per_stage": [1, 1, 1], "fade_steps": 0},
        "resolution_weights": [1.0, 0.5, 0.25],
    },
    "checkpoint_dir": "ck",
}
#: The real MeteoSwiss event, as the existing nowcast train tests use it.
RADAR = {
    "train": [{"source": "mch", "start": "2015-05-15T15:45", "end": "2015-05-15T16:15"}],
    "validation": [{"source": "mch", "start": "2015-05-15T16:20", "end": "2015-05-15T16:45"}],
}


def _with(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """``base`` with dotted keys set (``training__lr=1`` sets training.lr); a value of ``...`` removes the key."""
    data = copy.deepcopy(base)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = data
        for key in parents:
            node = node.setdefault(key, {})
        if value is ...:
            node.pop(last, None)
        else:
            node[last] = value
    return data


CONVLSTM = _with(
    TWIN, model__kind="convlstm", model__n_outputs=..., training__schedule=..., training__resolution_weights=...
)


def _one_error_line(result: Any, fragment: str) -> str:
    """The single ``error:`` line of a run that exited with code 2 (as ``tests/cli/conftest.py`` checks it)."""
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output and "╭" not in result.output
    assert fragment in lines[0], lines[0]
    return lines[0]


def _train(config: Path, *args: str) -> Any:
    return runner.invoke(app, ["nowcast", "train", str(config), "--no-progress", *args])


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data))
    return path


# ----------------------------------------------------------------------------- schema


def test_multires_twin_dict_builds_the_configs() -> None:
    spec = train_config_from_dict(TWIN)
    model, config = spec.config.model, spec.config
    assert isinstance(model, MultiResConfig) and model.n_outputs == 3 and model.hidden_channels == (4, 8)
    assert config.schedule == ProgressiveSchedule(steps_per_stage=(1, 1, 1)) and config.weights == (1.0, 0.5, 0.25)
    assert spec.train == spec.validation == () and spec.init_from is None
    assert spec.twin == TwinData(sequences=2, frames=8, grid=32, spinup_minutes=10.0, augment=True)
    assert spec.twin.n_arrays == 16 and spec.twin.validation_seed == 2
    conv = train_config_from_dict(_with(CONVLSTM, training__init_from="pre/best.pt"))
    assert type(conv.config.model) is ConvLSTMConfig and conv.config.schedule is None
    assert conv.init_from == Path("pre/best.pt")
    assert train_config_from_dict(_with(TWIN, data__twin={})).twin == TwinData()  # the defaults


@pytest.mark.parametrize(
    "data",
    [
        TWIN,
        _with(CONVLSTM, training__init_from="runs/pre", data__twin__augment=False, data__twin__no_echo_dbz=12.0),
        _with(TWIN, data__train=RADAR["train"], data__validation=RADAR["validation"], data__root="radar"),
        _with(TWIN, training__schedule=None, training__resolution_weights=None, model__n_outputs=2),
    ],
    ids=["twin-multires", "convlstm-init", "twin-and-radar", "multires-defaults"],
)
def test_check_output_round_trips(data: dict[str, Any], tmp_path: Path) -> None:
    """``--check`` prints a YAML that loads back to the same spec (every default filled in)."""
    result = _train(_write(tmp_path / "c.yaml", data), "--check")
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.stdout)
    assert train_config_from_dict(printed) == train_config_from_dict(data)
    assert printed["model"]["kind"] == ("multires" if data["model"]["kind"] == "multires" else "convlstm")
    assert ("schedule" in printed["training"]) == (data["model"]["kind"] == "multires")
    assert not (tmp_path / "ck").exists()


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"model__kind": "unet"}, "model.kind must be one of convlstm, multires; got 'unet'"),
        ({"model__kind": 3}, "model.kind must be one of convlstm, multires; got 3"),
        ({"model__kind": "convlstm"}, "model.n_outputs needs model.kind: multires"),
        ({"model__kind": ..., "model__n_outputs": ...}, "training.schedule needs model.kind: multires"),
        ({"model__n_outputs": 4}, "model: n_outputs must be in 1..3"),
        ({"model__n_outputs": "two"}, "model.n_outputs must be an integer"),
        ({"training__schedule__steps_per_stage": [2, 1]}, "schedule has 2 stages but the model has 3 outputs"),
        ({"training__schedule__fade_steps": 5}, "fade_steps (5) must not exceed"),
        ({"training__schedule__steps_per_stage": []}, "steps_per_stage must be non-empty"),
        ({"training__schedule__stages": 3}, "unknown key 'stages' in training.schedule"),
        ({"training__schedule": 100}, "training.schedule must be a mapping"),
        ({"training__resolution_weights": [1.0, 1.0]}, "resolution_weights needs one weight per output (3)"),
        ({"training__resolution_weights": [1.0, 1.0, 0.0]}, "the coarsest resolution weight must be > 0"),
        ({"training__resolution_weights": "flat"}, "training.resolution_weights must be a list"),
        ({"data__twin__sequences": 0}, "data.twin: sequences must be >= 1"),
        ({"data__twin__frames": 4}, "data.twin.frames 4: one sample needs t_in + t_out = 6"),
        ({"data__twin__grid": 16}, "training.crop_size 32 is larger than the twin grid 16"),
        ({"data__twin__grid": 4}, "data.twin: grid must be at least 8"),
        ({"data__twin__frame_minutes": 10}, "unknown key 'frame_minutes' in data.twin"),
        ({"data__twin__model": {"dx": 1000}}, "unknown key 'model' in data.twin"),
        ({"data__twin__augment": "yes"}, "data.twin.augment must be true or false"),
        ({"data__twin__spinup_minutes": 0.05}, "spinup_minutes (0.05 min) must be a whole number of model steps"),
        ({"data__twin__seed": 2**63 - 2}, "data.twin: seed must be >= 0 and seed + sequences < 2^63"),
        ({"data__twin__seed": -1}, "data.twin: seed must be >= 0"),
        ({"data__twin__zr_b": -1.0}, "Z-R coefficients must be positive"),
        ({"data__twin": "lots"}, "data.twin must be a mapping"),
        ({"data__twin__sequences": 10**6, "data__twin__grid": 4096}, "twin arrays of 8 x 4096^2 needs about"),
        ({"data__train": RADAR["train"]}, "data.validation is required with data.train (only a twin-only"),
        ({"data__twin": ...}, "data is missing the required key 'train'"),
        ({"data__twin": None}, "data is missing the required key 'train'"),
        ({"data__validation": RADAR["validation"], "data__twin": ...}, "data is missing the required key 'train'"),
        ({"data__twin__grid": 48}, ""),  # fine: crops of 32 from 48^2 (the check below expects exit 0)
        ({"training__init_from": 5}, "training.init_from must be a string, got 5"),
        ({"training__init_form": "x.pt"}, "unknown key 'init_form' in training; allowed: init_from,"),
    ],
)
def test_bad_combinations_are_one_line_exit_2(changes: dict[str, Any], fragment: str, tmp_path: Path) -> None:
    config = _write(tmp_path / "c.yaml", _with(TWIN, checkpoint_dir=str(tmp_path / "ck"), **changes))
    result = _train(config, "--check")
    if not fragment:
        assert result.exit_code == 0, result.output
        return
    _one_error_line(result, fragment)
    with pytest.raises(ConfigError) as err:  # the same message from Python, without the file name
        load_train_yaml(config)
    assert fragment in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "ck").exists()


@pytest.mark.parametrize(("key", "value"), [("schedule", {"steps_per_stage": [3]}), ("resolution_weights", [1.0])])
def test_multires_keys_need_kind_multires(key: str, value: Any, tmp_path: Path) -> None:
    assert train_config_from_dict(_with(CONVLSTM, **{f"training__{key}": None})).config.n_outputs == 1  # null: fine
    data = _with(CONVLSTM, checkpoint_dir=str(tmp_path / "ck"), **{f"training__{key}": value})
    _one_error_line(_train(_write(tmp_path / "c.yaml", data), "--check"), f"training.{key} needs model.kind: multires")


def test_memory_estimate_counts_the_augmented_twin() -> None:
    """`TwinData.pixels` is what the generated arrays hold (plus one sequence while augmenting), 8x with augment."""
    twin = TwinData(sequences=2, frames=6, grid=16, spinup_minutes=0.0, augment=True)
    train, val, line = twin_arrays(twin, validate=True)
    assert len(train) == 16 and len(val) == 1 and "x 8 rotations/mirrors = 16 arrays" in line
    assert all(a.dtype == np.float32 and a.shape == (6, 16, 16) for a in (*train, *val))
    one = val[0].nbytes
    assert sum(a.nbytes for a in (*train, *val)) + one == 4 * twin.pixels(validate=True)
    np.testing.assert_array_equal(train[0], twin_arrays(dataclasses.replace(twin, augment=False), validate=False)[0][0])
    plain = train_config_from_dict(_with(TWIN, data__twin__augment=False))
    augmented = train_config_from_dict(TWIN)
    per_sequence = 4.0 * 8 * 32**2
    # 2 sequences become 16 arrays, and one sequence is held while its variants are made
    assert augmented.estimated_bytes() - plain.estimated_bytes() == pytest.approx(per_sequence * (16 + 1 - 2))


def test_examples_pretrain_then_finetune_on_the_first_halves() -> None:
    pre = load_train_yaml(EXAMPLES / "nowcast_pretrain_twin.yaml")
    fine = load_train_yaml(EXAMPLES / "nowcast_finetune.yaml")
    base = load_train_yaml(EXAMPLES / "nowcast_train.yaml")
    assert isinstance(pre.config.model, MultiResConfig) and pre.config.schedule is not None
    assert pre.config.schedule.n_stages == pre.config.model.n_outputs
    assert pre.twin is not None and pre.twin.augment and pre.twin.n_arrays == 128 and not pre.train
    assert pre.validation == () and pre.init_from is None
    assert fine.twin is None and fine.init_from == pre.config.checkpoint_dir
    assert fine.config.model == pre.config.model and fine.extrapolation == pre.extrapolation
    assert (fine.train, fine.validation) == (base.train, base.validation)
    assert fine.config.lr < pre.config.lr


def test_example_ensemble_yaml_is_the_shipped_recipe_on_the_first_halves() -> None:
    spec = load_train_yaml(EXAMPLES / "nowcast_ensemble.yaml")
    base = load_train_yaml(EXAMPLES / "nowcast_train.yaml")
    model = spec.config.model
    assert isinstance(model, MultiResConfig) and model.noise_channels > 0 and spec.config.members == 2
    assert (spec.train, spec.validation) == (base.train, base.validation) and spec.extrapolation == base.extrapolation
    assert spec.config.schedule is not None and spec.config.schedule.total_steps == spec.config.max_steps
    assert spec.config.loss.adversarial_weight == 0.0 and spec.config.crop_size == 64


# ----------------------------------------------------------------------------- pre-training and fine-tuning


def _checkpoint(path: Path, model: Any, *, kind: str = "multires", weights: dict[str, Any] | None = None) -> Path:
    net = build_model(model)
    state = net.state_dict() if weights is None else weights
    torch.save({"model_config": dataclasses.asdict(model), "model_kind": kind, "model": state, "step": 7}, path)
    return path


TINY_MODEL = MultiResConfig(t_in=3, t_out=3, hidden_channels=(4, 8), use_extrapolation=True, n_outputs=3)


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda d: d / "nothing.pt", "training.init_from: no checkpoint at"),
        (lambda d: (d / "empty").mkdir() or d / "empty", "no best.pt or last.pt in the folder"),
        (lambda d: (d / "g.pt").write_text("not a checkpoint") and d / "g.pt", "is not a readable checkpoint"),
        (lambda d: torch.save({"w": torch.zeros(2)}, d / "f.pt") or d / "f.pt", "not a checkpoint of dacast nowcast"),
        (
            lambda d: _checkpoint(d / "c.pt", ConvLSTMConfig(t_in=3, t_out=3, hidden_channels=(4, 8)), kind="convlstm"),
            "holds a convlstm model, but model.kind is multires",
        ),
        (
            lambda d: _checkpoint(d / "o.pt", dataclasses.replace(TINY_MODEL, hidden_channels=(4, 4))),
            "was trained with other model settings (hidden_channels (4, 4) vs (4, 8))",
        ),
        (lambda d: _checkpoint(d / "w.pt", TINY_MODEL, weights={}), "the weights in"),
    ],
    ids=["missing", "empty-folder", "garbage", "foreign", "other-kind", "other-settings", "weights"],
)
def test_init_from_errors_exit_2(make: Any, fragment: str, tmp_path: Path) -> None:
    path = make(tmp_path)
    data = _with(TWIN, checkpoint_dir=str(tmp_path / "ck"), training__init_from=str(path))
    _one_error_line(_train(_write(tmp_path / "c.yaml", data)), fragment)
    assert not (tmp_path / "ck").exists()


def test_failed_start_leaves_no_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Training that fails before its first checkpoint leaves no last.pt (a new folder goes): a rerun is an init."""
    init = _checkpoint(tmp_path / "pre.pt", dataclasses.replace(TINY_MODEL, seed=3))

    def boom(config: Any, *args: Any, **kwargs: Any) -> Any:
        assert kwargs["initial_weights"] is not None and not (config.checkpoint_dir / "last.pt").exists()
        raise ValueError("boom")

    monkeypatch.setattr(train_module, "train_nowcast", boom)
    (tmp_path / "kept").mkdir()
    for folder, kept in (("new", False), ("kept", True)):
        data = _with(TWIN, checkpoint_dir=str(tmp_path / folder), training__init_from=str(init))
        with pytest.raises(ConfigError, match="^boom$"):
            train_from_spec(train_config_from_dict(data), progress=False)
        assert (tmp_path / folder).is_dir() == kept and not (tmp_path / folder / "last.pt").exists()


def test_twin_pretraining_then_finetuning_on_radar(
    radar_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twin pre-training writes a multires best.pt; fine-tuning on the MeteoSwiss event starts from exactly it."""
    pre = tmp_path / "pre"
    result = _train(_write(tmp_path / "pre.yaml", _with(TWIN, checkpoint_dir=str(pre))))
    assert result.exit_code == 0, result.output
    assert "trained to step 3/3 on cpu" in result.stdout and "x 8 rotations/mirrors = 16 arrays" in result.stdout
    best = torch.load(pre / "best.pt", weights_only=True)
    assert best["model_kind"] == "multires" and best["step"] == 3 and best["stage"] == 2
    sidecar = json.loads((pre / "nowcast_workflow.json").read_text())
    assert sidecar["model_kind"] == "multires" and sidecar["init_from"] is None and sidecar["root"] is None
    assert sidecar["twin"]["augment"] and sidecar["twin"]["validation_seed"] == 2 and sidecar["validation"] == []
    assert sidecar["extrapolation"]["motion"] == "dis"

    seen: list[dict[str, torch.Tensor]] = []
    real = train_module.train_nowcast

    def spy(config: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["initial_weights"])
        return real(config, *args, **kwargs)

    monkeypatch.setattr(train_module, "train_nowcast", spy)
    fine = tmp_path / "fine"
    data = _with(
        TWIN,
        data={**RADAR, "root": str(radar_root)},
        model__seed=5,  # the seed of the initialisation that init_from replaces may differ
        loss__adversarial_weight=0.02,
        discriminator={"channels": [4, 8], "n_frames": 2},
        training__schedule=None,
        training__max_steps=2,
        training__val_every=2,
        training__init_from=str(pre),
        checkpoint_dir=str(fine),
    )
    config = _write(tmp_path / "fine.yaml", data)
    result = _train(config)
    assert result.exit_code == 0, result.output
    assert f"initialised the generator from {pre / 'best.pt'} (step 3)" in result.stdout
    assert "trained to step 2/2 on cpu" in result.stdout
    assert len(seen) == 1 and seen[0].keys() == best["model"].keys()
    for name, weights in best["model"].items():  # step 0 of the fine-tuning is the pre-trained generator
        assert torch.equal(seen[0][name], weights), name
    fresh = build_model(dataclasses.replace(TINY_MODEL, seed=5)).state_dict()
    assert not all(torch.equal(fresh[k], v) for k, v in best["model"].items())
    tuned = torch.load(fine / "best.pt", weights_only=True)
    assert tuned["model_kind"] == "multires" and tuned["step"] == 2
    sidecar = json.loads((fine / "nowcast_workflow.json").read_text())
    assert sidecar["init_from"] == {"checkpoint": str((pre / "best.pt").resolve()), "step": 3}
    assert sidecar["twin"] is None and sidecar["train"] == ["mch 2015-05-15T15:45..2015-05-15T16:15"]

    _one_error_line(
        _train(
            _write(
                tmp_path / "trec.yaml", _with(data, extrapolation__motion="trec", checkpoint_dir=str(tmp_path / "o"))
            )
        ),
        "was trained with other extrapolation settings",
    )
    # the same command again continues the fine-tuning from its own last.pt (not from init_from), keeping the record
    result = _train(config, "--max-steps", "3")
    assert result.exit_code == 0, result.output
    assert "resuming from step 2" in result.stdout and "initialised" not in result.stdout
    assert seen[-1] is None
    assert json.loads((fine / "nowcast_workflow.json").read_text())["init_from"]["step"] == 3


def test_twin_beside_radar_validates_on_radar_only(
    radar_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With radar ranges too, the twin arrays join the training arrays and validation stays on the radar."""
    got: dict[str, Any] = {}

    class Seen(Exception):
        pass

    def spy(config: Any, train: list[Any], val: list[Any], **kwargs: Any) -> Any:
        got.update(train=[a.shape for a in train], val=[a.shape for a in val])
        got.update(sidecar=json.loads((config.checkpoint_dir / "nowcast_workflow.json").read_text()))
        raise Seen

    monkeypatch.setattr(train_module, "train_nowcast", spy)
    data = _with(TWIN, data={**RADAR, "root": str(radar_root), "twin": {**TWIN["data"]["twin"], "augment": False}})
    with pytest.raises(Seen):
        train_from_spec(train_config_from_dict(_with(data, checkpoint_dir=str(tmp_path / "ck"))), progress=False)
    assert got["train"] == [(7, 640, 710), (8, 32, 32), (8, 32, 32)] and got["val"] == [(6, 640, 710)]
    twin = got["sidecar"]["twin"]
    assert twin["validation_seed"] is None and twin["train_seeds"] == "0..1" and twin["frame_minutes"] == 5.0
    assert got["sidecar"]["validation"] == ["mch 2015-05-15T16:20..2015-05-15T16:45"]
    assert not (tmp_path / "ck").exists()  # failed before its first checkpoint: the new folder is removed
