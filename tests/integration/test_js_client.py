"""Interop with the official JavaScript client: ``socket.io-client`` from npm, run by Node.

The scripts live in ``tests/js``; ``.ci/run`` installs their ``node_modules`` (and so does the
fixture here when they are missing).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rxbus.event import Event
from tests.conftest import require_binary
from tests.integration.serve_process import ServeProcess

# One worker runs the module under xdist: its module fixture may `npm ci` into tests/js, which
# two workers must not do at once.
pytestmark = [
    pytest.mark.needs_node,
    pytest.mark.timeout(180),
    pytest.mark.xdist_group("js_client"),
]

JS = Path(__file__).resolve().parents[1] / "js"


@pytest.fixture(scope="module")
def node() -> str:
    """The node binary, with socket.io-client installed in tests/js from package-lock.json."""
    node = require_binary("node", "nodejs")
    if not (JS / "node_modules" / "socket.io-client").is_dir():
        npm = require_binary("npm")
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=JS,
            check=True,
            timeout=150,
        )
    return node


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    with ServeProcess(tmp_path_factory.mktemp("js"), token="js-token") as proc:
        yield proc


def read_json_line(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    """The script's next line; it prints within seconds or exits (it gives up after 60 s)."""
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline()
    assert line, proc.stderr.read().decode()
    return dict(json.loads(line))


def test_node_subscriber_receives_exactly_the_matching_events(
    node: str, server: ServeProcess
) -> None:
    """A Node client subscribed to interop.hook.* gets those events, in order, once each."""
    proc = subprocess.Popen(
        [node, "subscribe.js", server.url, "interop.hook.*", "interop.hook.end", "js-token"],
        cwd=JS,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert read_json_line(proc) == {"ready": True, "missed": 0}
        topics = ["interop.hook.pre", "interop.other", "interop.hook.post.deep", "interop.hook"]
        sent = [Event(topic=t, data={"i": i}) for i, t in enumerate(topics * 10)]
        sent.append(Event(topic="interop.hook.end"))
        for start in range(0, len(sent), 7):  # several requests, some without a match
            status, _ = server.post([e.to_dict() for e in sent[start : start + 7]])
            assert status == 200
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err.decode()
    received = [Event.from_dict(json.loads(line)["event"]) for line in out.splitlines()]
    expected = [e for e in sent if e.topic in ("interop.hook.pre", "interop.hook.end")]
    assert received == expected  # every field intact, nothing extra, nothing twice


def test_node_publisher_gets_acks_and_dedupe(node: str, server: ServeProcess) -> None:
    """Node publishes a batch twice: the first ack accepts all, the second counts duplicates."""
    result = subprocess.run(
        [node, "publish.js", server.url, "interop.fromnode", "25", "js-token"],
        cwd=JS,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr.decode()
    reply = json.loads(result.stdout)
    assert reply["acks"] == [
        {"ok": True, "accepted": 25, "duplicates": 0},
        {"ok": True, "accepted": 0, "duplicates": 25},
    ]
    stored = server.history("interop.fromnode")
    assert [e["id"] for e in stored] == reply["ids"]
    assert [e["data"]["n"] for e in stored] == list(range(25))
    assert {(e["type"], e["source"]) for e in stored} == {("FromNode", "node")}


def test_node_client_without_the_token_is_refused(node: str, server: ServeProcess) -> None:
    result = subprocess.run(
        [node, "subscribe.js", server.url, "interop.*", "interop.end"],
        cwd=JS,
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "connect_error" in result.stderr.decode() and "token" in result.stderr.decode()
