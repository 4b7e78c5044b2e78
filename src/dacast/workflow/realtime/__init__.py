"""The real-time service: feeds fill an inbox, a loop publishes issues, a web page shows them (docs/realtime.md).

* `config`: `RealtimeConfig` and its presets (``bda-small``, ``bda-256``, ``bda-tiny``, ``replay-*``).
* `feeds`: the BDA twin's radar (`run_twin_feed`) and a replay of real composites (`run_replay_feed`).
* `inbox`: atomic delivery, the twin volume format, rejection with a reason.
* `bda_loop`: radar volume -> gridded LETKF on the cycle engine -> 30-min forecasts (`BDALoop`).
* `nowcast_loop`: composite -> extrapolation nowcast, live verification (`NowcastLoop`).
* `products`, `status`, `verification`: the products folder the page reads.
* `server`: FastAPI page and JSON API (read only, loopback by default); `demo`: all three parts supervised.
"""

from dacast.workflow.realtime.bda_loop import BDALoop
from dacast.workflow.realtime.config import REALTIME_PRESETS, RealtimeConfig, ReplayConfig, load_realtime_target
from dacast.workflow.realtime.demo import run_demo
from dacast.workflow.realtime.feeds import run_replay_feed, run_twin_feed
from dacast.workflow.realtime.nowcast_loop import NowcastLoop
from dacast.workflow.realtime.server import create_app, running_server, serve

__all__ = [
    "REALTIME_PRESETS",
    "BDALoop",
    "NowcastLoop",
    "RealtimeConfig",
    "ReplayConfig",
    "create_app",
    "load_realtime_target",
    "run_demo",
    "run_replay_feed",
    "run_twin_feed",
    "running_server",
    "serve",
]
