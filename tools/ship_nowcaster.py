"""Put a trained nowcaster into the package (``src/dacast/ml/weights/NAME/``) with its model card.

    dacast nowcast train examples/nowcast_ensemble.yaml
    python benchmarks/nowcast_vs_pysteps.py --held-out-only --interval 30 --members 20 \\
        --methods pysteps-sprog,pysteps-steps,dacast-extrapolation,dacast-convlstm,dacast-convlstm-ens \\
        --checkpoint runs/nowcast-ensemble --json runs/nowcast-ensemble-bench.json
    python tools/ship_nowcaster.py runs/nowcast-ensemble --yaml examples/nowcast_ensemble.yaml \\
        --bench runs/nowcast-ensemble-bench.json --case mch 2015-05-15T17:45

Writes ``best.pt`` (the best generator's weights and settings only: no optimiser, no
discriminators, loadable with ``weights_only=True``), ``nowcast_workflow.json`` (the extrapolation
settings of its input, without the training machine's radar path) and ``model_card.json``: how it
was made (YAML, data ranges, steps, wall time, device, versions), the SHA-256 of ``best.pt``, the
held-out benchmark means per method, and one reference case (``--case SOURCE T0``) with the
scores `dacast nowcast run --method convlstm` gives there, which the tests reproduce.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dacast import __version__

SIDECAR = "nowcast_workflow.json"
SCORE_KEYS = ("csi_1", "csi_5", "fss_10km_1", "spectrum_err", "crps", "spread_skill", "seconds")


def bench_means(path: Path) -> dict[str, dict[str, float]]:
    """Means over the held-out rows of a ``benchmarks/nowcast_vs_pysteps.py --json`` file, per method."""
    rows = [r for r in json.loads(path.read_text()) if r["held_out"]]
    out: dict[str, dict[str, float]] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        rs = [r for r in rows if r["method"] == method]
        means = {k: float(np.nanmean([r[k] for r in rs])) for k in SCORE_KEYS if any(np.isfinite(r[k]) for r in rs)}
        means["issue_times"] = len({(r["event"], r["issue_time"]) for r in rs})
        means["members"] = rs[0].get("members", 1)
        out[method] = means
    return out


def training_seconds(history: list[dict[str, float]]) -> float:
    """Wall time of a training over all its sessions: ``wall_s`` restarts at 0 when a run is resumed."""
    total, last = 0.0, 0.0
    for rec in history:
        if rec["wall_s"] < last:  # a resumed session began
            total += last
        last = rec["wall_s"]
    return total + last


def reference_case(folder: Path, source: str, start: str) -> dict[str, Any]:
    """The scores of the shipped nowcaster at one issue time, as ``dacast nowcast run`` computes them."""
    from dacast.workflow.nowcast.config import NowcastRunConfig
    from dacast.workflow.nowcast.run import run_nowcast

    config = NowcastRunConfig(source=source, start=start, method="convlstm", checkpoint=folder, device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        result = run_nowcast(config, tmp, plots=False)
    scores = result.scores
    assert scores is not None, "the reference case needs observed frames"
    return {
        "source": source,
        "issue_time": start,
        "command": f"dacast nowcast run --source {source} --start {start} --method convlstm --device cpu",
        "csi_1_mean": float(scores["csi"].sel(threshold=1.0).mean()),
        "csi_5_mean": float(scores["csi"].sel(threshold=5.0).mean()),
        "csi_1_per_lead": [round(float(v), 6) for v in scores["csi"].sel(threshold=1.0).values],
        "tolerance": 0.01,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="checkpoint folder of `dacast nowcast train`")
    parser.add_argument("--yaml", type=Path, required=True, help="the training YAML")
    parser.add_argument("--bench", type=Path, help="benchmark rows (--json) of this checkpoint")
    parser.add_argument("--case", nargs=2, metavar=("SOURCE", "T0"), help="reference issue time")
    parser.add_argument("--name", default="multires_ensemble")
    parser.add_argument("--out", type=Path, default=Path(__file__).parents[1] / "src/dacast/ml/weights")
    args = parser.parse_args(argv)

    best = torch.load(args.run / "best.pt", map_location="cpu", weights_only=True)
    metrics = json.loads((args.run / "metrics.json").read_text())
    folder = args.out / args.name
    folder.mkdir(parents=True, exist_ok=True)
    weights = {k: best[k] for k in ("model_config", "model_kind", "model", "step")}
    torch.save(weights, folder / "best.pt")
    sidecar = json.loads((args.run / SIDECAR).read_text())
    sidecar.pop("root", None)
    (folder / SIDECAR).write_text(json.dumps(sidecar, indent=2) + "\n")

    history = metrics["history"]
    card: dict[str, Any] = {
        "name": args.name,
        "model_kind": best["model_kind"],
        "model_config": best["model_config"],
        "parameters": int(sum(v.numel() for v in best["model"].values())),
        "sha256_best_pt": hashlib.sha256((folder / "best.pt").read_bytes()).hexdigest(),
        "training": {
            "command": f"dacast nowcast train {args.yaml.as_posix()}",
            "yaml": args.yaml.read_text(),
            "data": {
                "train": sidecar.get("train"),
                "validation": sidecar.get("validation"),
                "twin": sidecar.get("twin"),
            },
            "steps": metrics["step"],
            "best_step": metrics["best_step"],
            "best_val_loss": metrics["best_val_loss"],
            "wall_seconds": training_seconds(history),
            "device": metrics["device"],
            "history": [
                {k: h[k] for k in ("step", "stage", "val_loss", "train_loss", "wall_s") if k in h} for h in history
            ],
        },
        "made": {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "dacast": __version__,
            "torch": torch.__version__,
        },
    }
    if args.bench:
        card["held_out_benchmark"] = {
            "command": "python benchmarks/nowcast_vs_pysteps.py --held-out-only --interval 30 --members 20 "
            "--methods pysteps-sprog,pysteps-steps,dacast-extrapolation,dacast-convlstm,dacast-convlstm-ens "
            f"--checkpoint {args.run.as_posix()}",
            "means": bench_means(args.bench),
        }
    if args.case:
        card["reference_case"] = reference_case(folder, *args.case)
    (folder / "model_card.json").write_text(json.dumps(card, indent=2) + "\n")
    size = (folder / "best.pt").stat().st_size / 1e6
    print(f"shipped {folder} ({size:.1f} MB): step {weights['step']}, {card['parameters']} parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
