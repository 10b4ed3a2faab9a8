"""A core-only install: every command and optional import names the extra to install.

The child processes run with the optional packages made unimportable (a ``sitecustomize`` that
refuses them, as if they were never installed), then do what a user would.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rxbus._extras import DIST_NAME, install_command
from tests.integration.serve_process import ROOT, child_env

pytestmark = pytest.mark.timeout(120)

BLOCKED = (
    "socketio", "engineio", "aiohttp", "redis", "prometheus_client", "IPython", "nats",
    "opentelemetry",
)  # fmt: skip


def blocker(modules: tuple[str, ...]) -> str:
    """A ``sitecustomize`` that makes ``modules`` unimportable, as if never installed."""
    return f"""
import sys

class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {modules!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, _NotInstalled())
"""


def env_without(tmp_path: Path, modules: tuple[str, ...]) -> dict[str, str]:
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(blocker(modules))
    env = child_env()
    env["PYTHONPATH"] = f"{site}:{env['PYTHONPATH']}"
    return env


@pytest.fixture
def core_only(tmp_path: Path) -> dict[str, str]:
    return env_without(tmp_path, BLOCKED)


def run(env: dict[str, str], *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        input=stdin.decode(),
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )


def test_the_blocker_works(core_only: dict[str, str]) -> None:
    done = run(core_only, "-c", "import socketio")
    assert done.returncode == 1 and "No module named 'socketio'" in done.stderr


def test_the_distribution_name_is_not_the_import_name() -> None:
    assert DIST_NAME == "rxbus-events"
    assert install_command("redis") == "pip install 'rxbus-events[redis]'"


def test_rxbus_serve_names_the_extra(core_only: dict[str, str]) -> None:
    done = run(core_only, "-m", "rxbus", "serve", "--port", "0", "--store", "none")
    [line] = done.stderr.splitlines()
    assert done.returncode == 2
    assert line == (
        "rxbus serve: error: rxbus serve needs the 'serve' extra (socketio is not installed): "
        f"pip install '{DIST_NAME}[serve]'"
    )


@pytest.mark.parametrize(
    ("code", "extra"),
    [
        ("from rxbus.sinks import SocketIOSink; SocketIOSink('http://127.0.0.1:1')", "serve"),
        (
            "from rxbus.sinks import RedisStreamSink; RedisStreamSink('redis://127.0.0.1:1')",
            "redis",
        ),
        (
            "from rxbus import EventBus; from rxbus.sinks import PrometheusExporter; "
            "PrometheusExporter(EventBus(), start=False)",
            "prometheus",
        ),
        ("import rxbus.server.app", "serve"),
        ("import rxbus.otel", "otel"),
        (
            "from rxbus.sources import nats_stream; nats_stream('nats://127.0.0.1:1', 's', 'd')",
            "nats",
        ),
        (
            "from rxbus import EventBus; from rxbus.sources import redis_stream; "
            "redis_stream('redis://127.0.0.1:1', 'events', group='g', consumer='c')",
            "redis",
        ),
        ("from rxbus import EventBus, viz; viz.live(EventBus())", "notebook"),
    ],
)
def test_optional_imports_raise_one_import_error_naming_the_extra(
    core_only: dict[str, str], code: str, extra: str
) -> None:
    wrapped = (
        "from rxbus.errors import MissingExtraError\n"
        f"try:\n    {code}\nexcept MissingExtraError as err:\n"
        "    assert isinstance(err, ImportError); print(err)\n"
    )
    done = run(core_only, "-c", wrapped)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith(install_command(extra)), done.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("publish", "core.ok", "--url", "http://127.0.0.1:9", "--spool", "{tmp}/spool"),
        ("tail", "--store", "{tmp}/e.jsonl", "--no-follow"),
        ("replay", "--store", "{tmp}/e.jsonl"),
        ("spool", "list", "--spool", "{tmp}/spool"),
        ("demo", "--events", "50"),
        ("bench", "--help"),
    ],
)
def test_core_commands_work_without_any_extra(
    core_only: dict[str, str], tmp_path: Path, args: tuple[str, ...]
) -> None:
    from rxbus import Event

    (tmp_path / "e.jsonl").write_bytes(Event(topic="core.ok").to_json() + b"\n")
    done = run(core_only, "-m", "rxbus", *(a.replace("{tmp}", str(tmp_path)) for a in args))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


METRICS = """
import asyncio

import aiohttp

from rxbus.server.app import RxbusServer, ServerConfig


async def main():
    server = RxbusServer(ServerConfig(port=0))
    await server.start()
    try:
        async with aiohttp.ClientSession() as session:
            async with session.get(server.url + "/metrics") as response:
                print(response.status, (await response.json())["error"])
    finally:
        await server.stop()


asyncio.run(main())
"""


def test_get_metrics_without_prometheus_client_names_the_extra(tmp_path: Path) -> None:
    """The server runs without prometheus_client; ``GET /metrics`` says what to install."""
    done = run(env_without(tmp_path, ("prometheus_client",)), "-c", METRICS)
    assert done.returncode == 0, done.stderr
    status, _, message = done.stdout.strip().partition(" ")
    assert status == "501" and message.endswith(install_command("prometheus")), message
