"""400 ``rxbus publish`` processes while ``rxbus serve`` is killed and restarted twice.

The first outage is a SIGKILL (a crash: whatever was in flight is cut off), the second a SIGTERM
(a clean stop). Publishes during an outage spool; the spool is delivered by later publishes and
by the restarted server. At the end the store must hold each of the 400 events exactly once.

400, not the 1,000 of earlier versions: each phase (up, killed, back, stopped, back) still sees
60 to 100 publishes, while 1,000 start-ups cost 70 CPU-seconds, a tenth of the whole suite's
CPU time on a machine whose cores are busy elsewhere.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rxbus.spool import Spool
from tests.conftest import wait_until
from tests.integration.serve_process import ServeProcess, child_env, rxbus_cmd

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

TOTAL = 400
# (completed invocations, action): kill at 100, back at 160; stop at 240, back at 300.
SCHEDULE = [(100, "kill"), (160, "start"), (240, "term"), (300, "start")]


def test_publishes_across_two_restarts_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    server = ServeProcess(tmp_path).start()
    done = 0
    done_lock = threading.Lock()
    exits: dict[int, tuple[int, bytes]] = {}

    def one(n: int) -> None:
        nonlocal done
        result = subprocess.run(
            rxbus_cmd(
                "publish",
                "rel.ev",
                "--data",
                json.dumps({"n": n}),
                "--url",
                server.url,
                "--spool",
                str(server.spool_dir),
            ),
            capture_output=True,
            # unmeasured: 400 start-ups under coverage double the test's time, and
            # test_publish_cli.py measures the same publish and spool paths
            env=child_env(measured=False),
            timeout=60,
        )
        with done_lock:
            exits[n] = (result.returncode, result.stderr)
            done += 1

    states = []
    # Four publishes at a time, as hooks of parallel tool calls run: each process mostly waits
    # (start-up, the server's reply), and two at a time left the test at two minutes.
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(one, n) for n in range(TOTAL)]
        for threshold, action in SCHEDULE:
            wait_until(lambda t=threshold: done >= t, 300, f"{threshold} publishes", interval=0.01)
            if action == "kill":
                server.stop(signal.SIGKILL)
            elif action == "term":
                assert server.stop(signal.SIGTERM) == 0, server.log()
            else:
                states.append(Spool.for_url(server.spool_dir, server.url).pending())
                server.start()
        for future in futures:
            future.result()

    failures = {n: r for n, r in exits.items() if r[0] != 0}
    assert failures == {}
    assert all(pending > 0 for pending in states), "each outage should have spooled events"
    # Events spooled near the end are delivered by the server's own spool watcher.
    wait_until(
        lambda: Spool.for_url(server.spool_dir, server.url).pending() == 0, 30, "the spool to drain"
    )
    assert server.stop(signal.SIGTERM) == 0

    stored = [e for e in server.stored() if e.topic == "rel.ev"]
    numbers = sorted(e.data["n"] for e in stored)
    assert len({e.id for e in stored}) == len(stored)  # each id once
    assert numbers == list(range(TOTAL))  # nothing lost, nothing twice
    print(f"spooled during outages (pending at restart): {states}")
