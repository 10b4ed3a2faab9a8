"""Event: the from_dict paths for absent or null fields, and mappings accepted as payloads."""

from __future__ import annotations

from collections import OrderedDict
from datetime import UTC, datetime
from types import MappingProxyType

import pytest

from rxbus import Event, PayloadError


class TestFromDictNulls:
    def test_null_source_and_type_take_their_defaults(self) -> None:
        """from_dict treats source=None and type=None as absent: '' and the topic's last segment."""
        e = Event.from_dict({"topic": "build.error", "source": None, "type": None})
        assert (e.source, e.type) == ("", "error")

    def test_null_id_and_timestamp_are_generated(self) -> None:
        """from_dict generates an id and a UTC timestamp when both are given as None."""
        before = datetime.now(UTC)
        e = Event.from_dict({"topic": "a", "id": None, "timestamp": None})
        assert len(e.id) == 30
        assert e.timestamp.tzinfo is UTC and e.timestamp >= before

    def test_a_datetime_timestamp_is_taken_as_is(self) -> None:
        """from_dict accepts a timestamp that is already a datetime, not only an ISO string."""
        ts = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
        e = Event.from_dict({"topic": "a", "timestamp": ts})
        assert e.timestamp == ts

    def test_a_naive_datetime_timestamp_is_refused(self) -> None:
        """from_dict refuses a naive datetime, naming it, as the constructor does."""
        with pytest.raises(PayloadError, match="timestamp must be timezone-aware"):
            Event.from_dict({"topic": "a", "timestamp": datetime(2024, 5, 1)})


class TestMappingPayloads:
    def test_a_read_only_mapping_is_copied_into_a_dict(self) -> None:
        """A Mapping that is not a dict (MappingProxyType) is accepted as data, stored as a dict."""
        e = Event(topic="a", data=MappingProxyType({"k": 1}))  # type: ignore[arg-type]
        assert type(e.data) is dict and e.data == {"k": 1}
        assert e.payload_size == len(b'{"k":1}')

    def test_a_dict_subclass_is_refused_as_not_json(self) -> None:
        """A dict subclass would come back from JSON as a plain dict, so it is refused."""
        with pytest.raises(PayloadError, match="data is not JSON-serialisable"):
            Event(topic="a", data=OrderedDict(k=1))

    def test_a_non_mapping_metadata_is_refused_naming_it(self) -> None:
        """metadata that is not a mapping raises PayloadError naming the field and the type."""
        with pytest.raises(PayloadError, match="metadata must be a dict of JSON values, got list"):
            Event(topic="a", metadata=[1])  # type: ignore[arg-type]
