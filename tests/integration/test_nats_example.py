"""The NATS "Scaling out" example runs as written: two processes, one nats-server, every
order billed once; the docs page shows the files verbatim."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import child_env, run_example_pair
from tests.integration.nats_server import NatsServer, running_nats

pytestmark = [pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "scaling_out_nats"
PAGE = ROOT / "docs" / "scaling-out" / "nats.md"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[NatsServer]:
    with running_nats(tmp_path) as srv:
        yield srv


def test_producer_and_consumer_processes(server: NatsServer) -> None:
    """consumer.py and producer.py, started as the page says, bill all 1000 orders."""
    env = child_env(NATS_URL=server.url)
    produced, out = run_example_pair(EXAMPLE, env)
    assert produced == "producer: 1000 events acknowledged by JetStream"
    total = sum(10 + n % 7 for n in range(1000))
    assert out == f"consumer: billed 1000 orders, total {total}"

    async def state(js: Any) -> tuple[int, int, int]:
        info = await js.consumer_info("ORDERS", "billing")
        stream = await js.stream_info("ORDERS")
        return int(info.num_ack_pending), int(info.num_pending), int(stream.state.messages)

    assert server.js(state) == (0, 0, 1000)


def test_the_page_shows_the_example_files_verbatim() -> None:
    """The page's listings are exactly the files the test above runs."""
    listings = re.findall(r"```text\n(.*?)```", PAGE.read_text(), flags=re.DOTALL)
    for name in ("producer.py", "consumer.py"):
        assert (EXAMPLE / name).read_text() in listings, f"{name} differs from its listing"
