"""Request and reply over the bus, with correlation ids."""

from __future__ import annotations

import asyncio
import threading

import pytest

from rxbus import Event, EventBus
from rxbus.errors import ReplyError


def test_request_gets_the_reply_with_the_same_correlation_id() -> None:
    async def main() -> tuple[Event, Event]:
        async with EventBus() as bus:
            requests: list[Event] = []

            @bus.on("math.add")
            def add(event: Event) -> None:
                requests.append(event)
                bus.reply(event, {"sum": event.data["a"] + event.data["b"]})

            reply = await bus.request("math.add", {"a": 2, "b": 3}, timeout=5)
            return requests[0], reply

    request, reply = asyncio.run(main())
    assert reply.data == {"sum": 5} and reply.topic == "reply.math.add"
    assert request.correlation_id and reply.correlation_id == request.correlation_id
    assert request.metadata["reply_to"] == "reply.math.add"


def test_an_async_responder_on_another_thread() -> None:
    """The responder runs on the bus's own loop thread; the request on the test's loop."""
    bus = EventBus()
    threads: set[str] = set()

    async def echo(event: Event) -> None:
        threads.add(threading.current_thread().name)
        bus.reply(event, {"echo": event.data["v"]})

    bus.subscribe(echo, topic="echo")

    async def main() -> list[int]:
        replies = await asyncio.gather(
            *(bus.request("echo", {"v": i}, timeout=5) for i in range(20))
        )
        return [r.data["echo"] for r in replies]

    assert asyncio.run(main()) == list(range(20))
    assert threads and threading.current_thread().name not in threads
    assert bus.close() == []


def test_a_request_nobody_answers_times_out() -> None:
    async def main() -> None:
        async with EventBus() as bus:
            with pytest.raises(TimeoutError, match=r"no reply to 'nobody\.home'.*0\.01s"):
                await bus.request("nobody.home", {}, timeout=0.01)

    asyncio.run(main())


def test_a_second_reply_is_dropped_and_counted() -> None:
    async def main() -> tuple[Event, dict[str, object], list[BaseException]]:
        async with EventBus() as bus:

            @bus.on("q")
            def twice(event: Event) -> None:
                bus.reply(event, {"n": 1})
                bus.reply(event, {"n": 2})

            reply = await bus.request("q", timeout=5)
            return reply, bus.metrics(), [d.error for d in bus.recent_dead_letters()]

    reply, metrics, errors = asyncio.run(main())
    assert reply.data == {"n": 1}
    assert metrics["dead_lettered"] == 1
    assert metrics["consumers"]["replies"]["failed"] == 1  # type: ignore[index]
    [error] = errors
    assert isinstance(error, ReplyError) and "second reply" in str(error)


def test_a_late_reply_is_dropped_and_counted() -> None:
    async def main() -> list[str]:
        async with EventBus() as bus:
            held: list[Event] = []
            bus.on("slow")(held.append)
            with pytest.raises(TimeoutError):
                await bus.request("slow", timeout=0)
            bus.reply(held[0], {"late": True})
            return [str(d.error) for d in bus.recent_dead_letters()]

    [message] = asyncio.run(main())
    assert "timed out" in message


def test_reply_needs_a_request_event() -> None:
    with EventBus() as bus:
        plain = bus.publish("q")
        with pytest.raises(ValueError, match="correlation_id"):
            bus.reply(plain, {})
