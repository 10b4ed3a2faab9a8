"""The "Scaling out" example runs as written: two processes, one Redis, every order billed once."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import child_env, run_example_pair
from tests.integration.redis_server import RedisServer, running_redis

pytestmark = [pytest.mark.needs_redis, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "scaling_out"
PAGE = ROOT / "docs" / "scaling-out" / "redis.md"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as srv:
        yield srv


def test_producer_and_consumer_processes(server: RedisServer) -> None:
    """consumer.py and producer.py, started as the docs page says, bill all 1000 orders."""
    env = child_env(REDIS_URL=server.url)
    produced, out = run_example_pair(EXAMPLE, env)
    assert produced == "producer: 1000 events written to Redis"
    total = sum(10 + n % 7 for n in range(1000))
    assert out == f"consumer worker-1: billed 1000 orders, total {total}"
    client = server.client()
    assert client.xpending("orders", "billing")["pending"] == 0
    client.close()


def test_the_docs_show_the_example_files_verbatim() -> None:
    """The page's listings include exactly the files this test runs (mkdocs' snippets include
    them at build time, so they cannot drift; tests/docs runs the page's other blocks)."""
    text = PAGE.read_text()
    for name in ("producer.py", "consumer.py"):
        include = f'--8<-- "examples/scaling_out/{name}"'
        assert re.search(rf"```text[^\n]*\n{re.escape(include)}\n```", text), name
