"""What the Dask workers of a tiled run measure about themselves: bytes received from other workers, peak memory.

The benchmarks and tests read them; the run itself does not need them.
"""

from __future__ import annotations

from typing import Any


def transfer_bytes(client: Any) -> int:
    """Bytes the workers have received from other workers so far (Dask's own transfer log, all workers)."""

    def received(dask_worker: Any) -> int:
        # The log keeps the latest 1000 transfers: add the new entries to a total kept on the worker.
        mark = getattr(dask_worker, "dacast_transfer_mark", float("-inf"))
        new = [e for e in dask_worker.transfer_incoming_log if e["stop"] > mark]
        total = getattr(dask_worker, "dacast_transfer_total", 0) + sum(int(e["total"]) for e in new)
        dask_worker.dacast_transfer_total = total
        dask_worker.dacast_transfer_mark = max((e["stop"] for e in new), default=mark)
        return total

    return int(sum(client.run(received).values()))


def peak_memory_mb(client: Any) -> dict[str, float]:
    """Resident-memory high-water mark (VmHWM, MB) of each worker process."""

    def peak() -> float:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    return {str(k): float(v) for k, v in client.run(peak).items()}


__all__ = ["peak_memory_mb", "transfer_bytes"]
