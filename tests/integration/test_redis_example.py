"""The "Scaling out" example runs as written: two processes, one Redis, every order billed once."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.redis_server import RedisServer, environ_with, running_redis

pytestmark = [pytest.mark.needs_redis, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "scaling_out"
README = ROOT / "README.md"


def section() -> str:
    """The README's "Scaling out" section."""
    return README.read_text().split("\n## Scaling out", 1)[1].split("\n## ", 1)[0]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with running_redis(tmp_path) as srv:
        yield srv


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_producer_and_consumer_processes(server: RedisServer) -> None:
    """consumer.py and producer.py, started as the README says, bill all 1000 orders."""
    env = environ_with(REDIS_URL=server.url)
    consumer = subprocess.Popen(
        [sys.executable, str(EXAMPLE / "consumer.py")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        producer = subprocess.run(
            [sys.executable, str(EXAMPLE / "producer.py")],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert producer.returncode == 0, producer.stderr
        assert producer.stdout.strip() == "producer: 1000 events written to Redis"
        out, err = consumer.communicate(timeout=60)
    finally:
        if consumer.poll() is None:
            consumer.kill()
            consumer.wait(10)
    assert consumer.returncode == 0, err
    total = sum(10 + n % 7 for n in range(1000))
    assert out.strip() == f"consumer worker-1: billed 1000 orders, total {total}"
    client = server.client()
    assert client.xpending("orders", "billing")["pending"] == 0
    client.close()


def test_the_readme_shows_the_example_files_verbatim() -> None:
    """The README's listings are exactly the files this test runs (tests/test_readme.py runs
    the section's other blocks)."""
    blocks = python_blocks(section())
    for name in ("producer.py", "consumer.py"):
        assert (EXAMPLE / name).read_text() in blocks, f"{name} differs from its README listing"
