"""Pre-training a nowcaster on twin rain, then fine-tuning it on radar: ``model.kind``, ``data.twin`` and
``training.init_from`` of a nowcast training (the YAML schema is in `dacast.workflow.nowcast.config`).

* ``model.kind``: ``convlstm`` (default, a `ConvLSTMConfig`) or ``multires`` (a `MultiResConfig`, which adds
  ``n_outputs``); ``training.schedule`` and ``training.resolution_weights`` apply to ``multires`` only.
* ``data.twin`` (`TwinData`): rain sequences of the radar twin's model (`twin_rain_sequence`),
  sequence ``i`` with seed ``seed + i``, 5 min apart like the radar frames, used instead of or besides the
  radar ``train`` ranges. With ``augment`` every sequence is replaced by its eight rotations and mirror
  images (`all_augmentations`): eight times the frames in memory (`TwinData.pixels`). Validation
  stays on the radar ``validation`` ranges; only a twin-only training (no radar ``train`` ranges) may omit
  them, and then validates on one more, never augmented, twin sequence with seed ``seed + sequences``
  (`TwinData.validation_seed`), which no training sequence uses.
* ``training.init_from`` (`load_init_state`): the generator of a NEW run starts from the weights of a
  checkpoint of `dacast.ml.train_nowcast` (its ``model`` entry: ``best.pt``'s best weights, ``last.pt``'s
  latest; a folder means its ``best.pt``, else ``last.pt``), loaded with ``weights_only=True``; the model
  settings must match, apart from the ``seed`` of the initialisation it replaces. They are handed to
  `dacast.ml.train_nowcast` (``initial_weights``): step 0 of the run is exactly the pre-trained generator;
  the optimisers, the discriminators and the sampling start afresh. A run that was interrupted resumes
  from its own ``last.pt`` (the weights it has learnt since), not from ``init_from`` again.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import Tensor

from dacast.ml import ConvLSTMConfig, MultiResConfig
from dacast.ml.nowcast_train_config import build_model, model_kind
from dacast.workflow.limits import INT64_MAX
from dacast.workflow.nowcast.twin_rain import TwinRainConfig, all_augmentations, twin_rain_sequence
from dacast.workflow.schema import ConfigError, mapping, parse, require, show

ModelKind = Literal["convlstm", "multires"]
MODEL_KINDS: tuple[str, ...] = get_args(ModelKind)
#: Keys of ``training`` that only a ``multires`` model takes.
MULTIRES_KEYS = ("schedule", "resolution_weights")
#: Minutes between two twin frames: the radar's 5-min step.
TWIN_FRAME_MINUTES = 5.0
#: Rotations and mirror images `all_augmentations` makes of one sequence.
N_DIHEDRAL = 8


# ----------------------------------------------------------------------------- model.kind


def model_config(settings: Any, where: str = "model") -> ConvLSTMConfig:
    """A `ConvLSTMConfig`, or a `MultiResConfig` for ``kind: multires``, from the ``model`` section."""
    settings = mapping(settings, where)
    kind = settings.get("kind", "convlstm")
    if not isinstance(kind, str) or kind not in MODEL_KINDS:
        raise ConfigError(f"{where}.kind must be one of {', '.join(MODEL_KINDS)}; got {show(kind)}")
    require(kind == "multires" or "n_outputs" not in settings, f"{where}.n_outputs needs {where}.kind: multires")
    return parse(MultiResConfig if kind == "multires" else ConvLSTMConfig, settings, where, tags=("kind",))


def check_training_keys(training: Mapping[str, Any], model: ConvLSTMConfig, where: str = "training") -> None:
    """`ConfigError` for a ``schedule`` or ``resolution_weights`` (not null) of a model that is not ``multires``."""
    if isinstance(model, MultiResConfig):
        return
    for key in MULTIRES_KEYS:
        require(training.get(key) is None, f"{where}.{key} needs model.kind: multires (the model is a convlstm)")


def model_settings(config: ConvLSTMConfig) -> dict[str, Any]:
    """The inverse of `model_config`: ``{"kind": ..., **fields}``, YAML-ready."""
    return {"kind": model_kind(config), **dataclasses.asdict(config)}


# ----------------------------------------------------------------------------- data.twin


@dataclass(frozen=True, kw_only=True)
class TwinData:
    """The ``data.twin`` section: twin rain sequences as training data (see the module docstring).

    Attributes:
        sequences: training sequences; sequence ``i`` is `twin_rain_sequence` with seed ``seed + i``.
        frames: frames per sequence, `TWIN_FRAME_MINUTES` apart (at least ``t_in + t_out``).
        grid: points per side of the twin's square domain (500 m apart); at least the crop size.
        seed: seed of the first sequence, in ``[0, 2^63 - 1 - sequences]``.
        spinup_minutes: model time from rest to the first frame (min), a whole number of 10-s model steps.
        augment: add every sequence's eight rotations and mirror images instead of it (eight times the memory).
        zr_a: ``a`` of ``Z = a R^b`` (Marshall-Palmer 200).
        zr_b: ``b`` of ``Z = a R^b`` (Marshall-Palmer 1.6).
        no_echo_dbz: reflectivity at or below which the twin radar reports 0 mm/h (None: its clear-air 10 dBZ).
    """

    sequences: int = 8
    frames: int = 48
    grid: int = 128
    seed: int = 0
    spinup_minutes: float = 60.0
    augment: bool = False
    zr_a: float = 200.0
    zr_b: float = 1.6
    no_echo_dbz: float | None = None

    def __post_init__(self) -> None:
        require(self.sequences >= 1, f"sequences must be >= 1, got {self.sequences}")
        require(
            0 <= self.seed <= INT64_MAX - self.sequences,
            f"seed must be >= 0 and seed + sequences < 2^63, got seed {show(self.seed)}",
        )
        try:
            self.rain_config(self.seed)  # TwinRainConfig's own checks: grid, frames, spin-up, Z-R, stability
        except ValueError as err:
            raise ConfigError(str(err)) from None

    def rain_config(self, seed: int) -> TwinRainConfig:
        """The `TwinRainConfig` of the sequence with ``seed`` (the twin's model and radar, 5-min frames)."""
        settings = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key in ("sequences", "augment", "seed"):
            settings.pop(key)
        return TwinRainConfig(**settings, seed=seed, frame_minutes=TWIN_FRAME_MINUTES)

    @property
    def validation_seed(self) -> int:
        """Seed of the held-out validation sequence of a twin-only training: ``seed + sequences``."""
        return self.seed + self.sequences

    @property
    def n_arrays(self) -> int:
        """Training arrays: ``sequences``, times 8 with ``augment``."""
        return self.sequences * (N_DIHEDRAL if self.augment else 1)

    def pixels(self, validate: bool) -> float:
        """Pixels held while training (a float): the ``n_arrays`` training arrays, the one sequence being
        augmented, and the validation sequence when ``validate``; 4 bytes each (float32)."""
        per_sequence = float(self.frames) * float(self.grid) ** 2
        return per_sequence * (self.n_arrays + (1.0 if self.augment else 0.0) + (1.0 if validate else 0.0))

    def record(self, validate: bool) -> dict[str, Any]:
        """The settings and seeds, JSON-ready (for the sidecar of the training)."""
        seeds = {"train_seeds": f"{self.seed}..{self.validation_seed - 1}", "frame_minutes": TWIN_FRAME_MINUTES}
        return {**dataclasses.asdict(self), **seeds, "validation_seed": self.validation_seed if validate else None}


def twin_arrays(
    twin: TwinData, *, validate: bool, progress: bool = False, log: Callable[[str], None] | None = None
) -> tuple[list[np.ndarray], list[np.ndarray], str]:
    """Generate the twin's training (and, when ``validate``, validation) arrays and a summary line.

    Returns:
        ``(train, validation, summary)``: ``(frames, grid, grid)`` float32 rain rates [mm/h]; ``train`` has
        `TwinData.n_arrays` arrays (the eight variants of each sequence in turn with ``augment``),
        ``validation`` one (``validate``) or none.
    """
    train: list[np.ndarray] = []
    for i in range(twin.sequences):
        seq = twin_rain_sequence(twin.rain_config(twin.seed + i), progress=progress)
        train.extend(all_augmentations(seq) if twin.augment else [seq])
        if log is not None:
            log(f"twin: sequence {i + 1}/{twin.sequences} (seed {twin.seed + i}), {float(np.mean(seq > 0.1)):.0%} rain")
    val = [twin_rain_sequence(twin.rain_config(twin.validation_seed), progress=progress)] if validate else []
    variants = f" x {N_DIHEDRAL} rotations/mirrors = {twin.n_arrays} arrays" if twin.augment else ""
    summary = (
        f"twin rain: {twin.sequences} sequences (seeds {twin.seed}..{twin.validation_seed - 1}) of {twin.frames} "
        f"frames on {twin.grid}x{twin.grid}{variants}"
        + (f"; validation: twin seed {twin.validation_seed}" if validate else "")
    )
    return train, val, summary


# ----------------------------------------------------------------------------- training.init_from


@dataclass(frozen=True, kw_only=True)
class InitState:
    """The generator weights `load_init_state` read: ``model`` (a state dict), the file and its training step."""

    model: dict[str, Tensor]
    path: Path
    step: int | None

    def record(self) -> dict[str, Any]:
        """JSON-ready: the file (absolute) and the step it was saved at."""
        return {"checkpoint": str(self.path.resolve()), "step": self.step}


def checkpoint_file(path: Path, where: str = "training.init_from") -> Path:
    """``path`` itself, or for a folder its ``best.pt`` (else ``last.pt``); `ConfigError` when there is none."""
    if path.is_dir():
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
        raise ConfigError(f"{where}: no best.pt or last.pt in the folder {path}")
    require(path.is_file(), f"{where}: no checkpoint at {path}")
    return path


def _settings_but_seed(settings: Mapping[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in settings.items() if k != "seed"}


def load_init_state(path: Path, model: ConvLSTMConfig, where: str = "training.init_from") -> InitState:
    """The generator weights of the checkpoint at ``path`` (`checkpoint_file`), checked against ``model``.

    Raises:
        ConfigError: no such file, not a readable checkpoint (``weights_only=True`` refuses anything but
            tensors and plain data), not one of `dacast.ml.train_nowcast`, another ``model_kind``, other model
            settings (the ``seed`` aside), or weights that do not fit; one line each.
    """
    file = checkpoint_file(Path(path), where)
    try:
        ck = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch raises many kinds for a corrupt or foreign file
        text = " ".join(str(err).split())[:160]
        raise ConfigError(f"{where}: {file} is not a readable checkpoint ({type(err).__name__}: {text})") from None
    ok = isinstance(ck, dict) and isinstance(ck.get("model"), dict) and isinstance(ck.get("model_config"), dict)
    require(ok, f"{where}: {file} is not a checkpoint of dacast nowcast train (no 'model' and 'model_config')")
    kind, want = ck.get("model_kind", "convlstm"), model_kind(model)
    require(kind == want, f"{where}: {file} holds a {kind} model, but model.kind is {want}")
    theirs, mine = _settings_but_seed(ck["model_config"]), _settings_but_seed(dataclasses.asdict(model))
    if theirs != mine:
        diff = ", ".join(f"{k} {show(theirs.get(k))} vs {show(v)}" for k, v in mine.items() if theirs.get(k) != v)
        raise ConfigError(f"{where}: {file} was trained with other model settings ({diff or 'other keys'})")
    try:
        build_model(model).load_state_dict(ck["model"])
    except (RuntimeError, TypeError, KeyError) as err:
        text = " ".join(str(err).split())[:160]
        raise ConfigError(f"{where}: the weights in {file} do not fit the model ({text})") from None
    step = ck.get("step")
    return InitState(model=ck["model"], path=file, step=step if isinstance(step, int) else None)
