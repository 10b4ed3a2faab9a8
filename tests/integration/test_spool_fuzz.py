"""The spool under malformed entries (hypothesis): every entry is delivered, set aside in
``rejected/`` or quarantined, and counted; none is lost and none blocks the others."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from rxbus.event import Event
from rxbus.server.ingest import Rejected, events_from_body
from rxbus.spool import Spool

ENTRY = st.one_of(
    st.builds(
        lambda n: ("event", Event(topic="fuzz.ok", data={"n": n}).to_json()),
        st.integers(-(2**63), 2**63 - 1),
    ),
    st.builds(lambda raw: ("bytes", raw), st.binary(max_size=200)),
    st.builds(lambda text: ("bytes", text.encode()), st.text(max_size=100)),
    st.just(("dir", b"")),
)


def server_send(lines: list[bytes], delivered: list[str]) -> str:
    """What ``rxbus serve`` answers: a batch with any bad event is refused whole."""
    try:
        events = events_from_body(b"\n".join(lines), "application/x-ndjson", 1_048_576)
    except Rejected:
        return "rejected"
    delivered.extend(e.id for e in events)
    return "ok"


@settings(max_examples=150, deadline=None)
@given(entries=st.lists(ENTRY, max_size=25), batch=st.integers(1, 8))
def test_every_entry_is_delivered_rejected_or_quarantined(
    entries: list[tuple[str, bytes]], batch: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        spool = Spool.for_url(tmp, "http://127.0.0.1:8765")
        good: list[str] = []
        for k, (kind, raw) in enumerate(entries):
            name = f"{k:04d}"
            if kind == "dir":
                (spool.directory / f"{name}.json").mkdir(parents=True)
                continue
            spool.append(name, raw)
            if kind == "event":
                good.append(Event.from_json(raw).id)
        warnings: list[str] = []
        delivered: list[str] = []
        count = spool.drain(lambda lines: server_send(lines, delivered), batch=batch,
                            warn=warnings.append)  # fmt: skip
        kept = len(spool.rejected()) + len(spool.quarantined())
        assert spool.pending() == 0
        assert count + kept == len(entries)
        assert set(good) <= set(delivered)  # every valid event got through
        # one line per entry set aside, whichever way
        assert len(warnings) == kept
        assert len(spool.quarantined()) == sum(1 for kind, _ in entries if kind == "dir")
        assert all(Path(p).exists() for p in spool.rejected())
