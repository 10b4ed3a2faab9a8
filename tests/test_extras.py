"""A missing extra is one clear error naming the pip command, with the distribution's name."""

from __future__ import annotations

import sys

import pytest

from rxbus._extras import DIST_NAME, install_command


def test_install_hint_names_the_distribution_not_the_import_name() -> None:
    assert DIST_NAME == "rxbus-events"
    assert install_command("redis") == "pip install 'rxbus-events[redis]'"


def test_redis_without_redis_py(monkeypatch: pytest.MonkeyPatch) -> None:
    from rxbus.sinks import RedisStreamSink

    monkeypatch.setitem(sys.modules, "redis", None)  # import redis now raises ImportError
    with pytest.raises(ImportError, match=r"pip install 'rxbus-events\[redis\]'"):
        RedisStreamSink("redis://127.0.0.1:1/0", stream="s")


def test_prometheus_exporter_without_prometheus_client(
    monkeypatch: pytest.MonkeyPatch, bus: object
) -> None:
    from rxbus.sinks import PrometheusExporter

    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    with pytest.raises(ImportError, match=r"pip install 'rxbus-events\[prometheus\]'"):
        PrometheusExporter(bus, port=0)  # type: ignore[arg-type]


def test_socketio_sink_without_the_serve_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from rxbus.sinks import SocketIOSink

    monkeypatch.setitem(sys.modules, "socketio", None)
    with pytest.raises(ImportError, match=r"pip install 'rxbus-events\[serve\]'"):
        SocketIOSink("http://127.0.0.1:1")


def test_serve_without_the_serve_extra_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from rxbus.cli import main

    monkeypatch.setitem(sys.modules, "socketio", None)
    monkeypatch.delitem(sys.modules, "rxbus.server.app", raising=False)
    assert main(["serve", "--port", "0"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.endswith("pip install 'rxbus-events[serve]'"), line
