"""The record codec's bulk decode: one JSON parse for a whole conversation, same results."""

from __future__ import annotations

import json

import pytest
from cryptography.fernet import Fernet

from agentsession import CorruptRecord, Message, ToolCall, UnknownSchemaVersion
from agentsession.stores import RecordCodec
from agentsession.stores.encryption import EncryptedCodec

MESSAGES = [
    Message("system", "be brief"),
    Message("user", 'quotes " , ] } and ✓', name="ada"),
    Message(
        "assistant",
        None,
        name="bot",
        tool_calls=(ToolCall("c1", "add", '{"a": 1}'),),
        metadata={"model": "offline"},
    ),
    Message("tool", "2", name="add", tool_call_id="c1", is_error=True),
]


@pytest.mark.parametrize("codec", [RecordCodec(), EncryptedCodec([Fernet.generate_key()])])
@pytest.mark.parametrize("kind", [str, bytes])
def test_bulk_decode_equals_one_by_one(codec: RecordCodec, kind: type) -> None:
    texts = [codec.dump_message(m) for m in MESSAGES]
    if kind is bytes:
        texts = [t.encode() for t in texts]  # type: ignore[misc]  # Redis returns bytes
    assert codec.load_messages(texts, "s1") == MESSAGES
    assert [codec.load_message(t, "s1") for t in texts] == MESSAGES
    assert codec.load_messages([], "s1") == []


GOOD = Message("user", "fine").to_json()
TWO_IN_ONE = GOOD + "," + GOOD  # one stored record holding two values


@pytest.mark.parametrize(
    ("damaged", "error"),
    [
        (["{oops"], "invalid message JSON"),
        ([GOOD[:-9]], "invalid message JSON"),  # truncated
        ([""], "invalid message JSON"),
        (["[1, 2]"], "not a JSON object"),
        (["null"], "not a JSON object"),
        ([TWO_IN_ONE], "invalid message JSON"),  # alone it is not one value
        (['{"v": 1, "role": "user", "content": "a"', '"x": 1}'], "invalid message JSON"),
        (['{"v": 1, "role": "wizard", "content": "x"}'], "unknown role"),
        (['{"v": 1, "content": "no role"}'], "malformed"),
    ],
)
@pytest.mark.parametrize("kind", [str, bytes])
def test_a_damaged_record_among_good_ones_is_named(
    damaged: list[str], error: str, kind: type
) -> None:
    texts = [GOOD, *damaged, GOOD]
    if kind is bytes:
        texts = [t.encode() for t in texts]  # type: ignore[misc]
    with pytest.raises(CorruptRecord, match=error) as caught:
        RecordCodec().load_messages(texts, "sess-1")
    assert caught.value.session_id == "sess-1" and "sess-1" in str(caught.value)


def test_a_newer_schema_in_bulk_asks_for_an_upgrade() -> None:
    newer = json.dumps({"v": 99, "role": "user", "content": "x"})
    with pytest.raises(UnknownSchemaVersion, match="upgrade agentsession"):
        RecordCodec().load_messages([GOOD, newer], "s1")


def test_invalid_utf8_bytes_are_corrupt() -> None:
    with pytest.raises(CorruptRecord, match="invalid message JSON"):
        RecordCodec().load_messages([GOOD.encode(), b'{"v": 1, "role": "user\xff"}'], "s1")


def test_sound_records_take_the_single_parse() -> None:
    class OneByOneFails(RecordCodec):
        def load_message(self, text: str | bytes, session_id: str) -> Message:
            raise AssertionError("decoded one by one")

    texts = [m.to_json() for m in MESSAGES]
    assert OneByOneFails().load_messages(texts, "s1") == MESSAGES
    with pytest.raises(AssertionError, match="one by one"):
        OneByOneFails().load_messages([*texts, "{oops"], "s1")
