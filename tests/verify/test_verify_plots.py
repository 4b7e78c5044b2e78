"""Verification figures render without pyplot and the GIF holds one frame per lead."""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from dacast.verify import plot_frames, plot_skill, save_nowcast_gif, score_nowcast


def nowcasts() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    obs = rng.gamma(0.5, 4.0, (6, 32, 40))
    obs[:, :4, :4] = np.nan
    return obs, {"persistence": np.repeat(obs[:1], 6, 0), "shifted": np.roll(obs, 1, axis=-1)}


def test_skill_and_frame_figures(tmp_path: Path) -> None:
    backend = matplotlib.get_backend()
    obs, fcs = nowcasts()
    results = {name: score_nowcast(fc, obs, scales_km=(4.0,)) for name, fc in fcs.items()}
    fig = plot_skill(results, tmp_path / "skill.png")
    assert isinstance(fig, Figure) and (tmp_path / "skill.png").stat().st_size > 1000
    assert len(fig.axes) == 4  # 2 thresholds x (CSI, FSS)
    fig = plot_frames(obs, fcs, leads=[0, 5], path=tmp_path / "frames.png")
    assert (tmp_path / "frames.png").stat().st_size > 1000
    assert len(fig.axes) == 3 * 2 + 1  # rows x leads + colour bar
    assert matplotlib.get_backend() == backend  # no global state touched


def test_gif(tmp_path: Path) -> None:
    obs, fcs = nowcasts()
    path = save_nowcast_gif(fcs["shifted"], tmp_path / "nowcast.gif", observed=obs, dpi=40)
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == 6
        assert im.info.get("loop") == 0
