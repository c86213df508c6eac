"""The canonical message and its stored JSON record."""

from __future__ import annotations

import json

import msgspec
import pytest

from agentsession import CorruptRecord, Message, ToolCall, UnknownSchemaVersion
from agentsession.messages import IMAGES_SCHEMA_VERSION, SCHEMA_VERSION, Image, decode_records


def test_round_trip_keeps_every_field() -> None:
    call = Message(
        role="assistant",
        content=None,
        name="assistant",
        tool_calls=(ToolCall("call_1", "add", '{"a": 2, "b": 2}'),),
        metadata={"model": "offline"},
    )
    result = Message(role="tool", content="4", name="add", tool_call_id="call_1", is_error=True)
    for message in (call, result, Message(role="user", content="héllo ✓", name="ada")):
        assert Message.from_json(message.to_json()) == message


def test_every_record_carries_the_schema_version() -> None:
    record = json.loads(Message(role="user", content="hi").to_json())
    assert record["v"] == SCHEMA_VERSION


@pytest.mark.parametrize(
    "text, error",
    [
        ("{not json", "invalid JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"v": 1, "content": "no role"}', "malformed"),
        ('{"v": 1, "role": "wizard", "content": "x"}', "unknown role"),
        ('{"v": 1, "role": "user", "content": 5}', "not text"),
        ('{"role": "user", "content": "x"}', "schema version None"),
    ],
)
def test_bad_records_name_the_session(text: str, error: str) -> None:
    with pytest.raises(CorruptRecord, match=error) as caught:
        Message.from_json(text, "sess-1")
    assert caught.value.session_id == "sess-1"
    assert "sess-1" in str(caught.value)


def test_a_newer_schema_asks_for_an_upgrade() -> None:
    with pytest.raises(UnknownSchemaVersion, match="upgrade agentsession"):
        Message.from_json(json.dumps({"v": IMAGES_SCHEMA_VERSION + 1, "role": "user"}), "s")


def test_from_dict_sets_every_field_of_a_frozen_message() -> None:
    full = Message(
        role="assistant",
        content="c",
        name="n",
        tool_calls=(ToolCall("i", "f", "{}"),),
        tool_call_id="t",
        is_error=True,
        created_at=12.5,
        metadata={"k": [1]},
        images=(Image("image/png", data=b"\x89PNG"), Image("image/jpeg", url="https://x/y.jpg")),
    )
    record = full.to_json()
    (fast,) = decode_records(f"[{record}]", 1) or ()
    for built in (Message.from_dict(full.to_dict(), "s"), fast):
        for f in msgspec.structs.fields(Message):
            assert getattr(built, f.name) == getattr(full, f.name), f.name
            assert getattr(built, f.name) != getattr(Message("user", None), f.name), f.name
        assert type(built) is Message and built == full
        with pytest.raises(AttributeError):
            built.content = "changed"  # type: ignore[misc]
        assert built.metadata is not full.metadata  # its own copy


def test_the_batch_decoder_and_the_record_decoder_agree() -> None:
    """A conversation's records decode in one strict pass (decode_records) or, when that
    refuses them, one by one (Message.from_dict): both give the same messages, and the batch
    decoder refuses exactly what the record decoder would call corrupt or too new."""
    messages = [
        Message("user", "hi", name="u", created_at=1.0),
        Message("assistant", None, tool_calls=(ToolCall("c", "f"),), created_at=2),
        Message("tool", "4", name="f", tool_call_id="c", is_error=True, metadata={"k": 1}),
        Message("user", "look", images=(Image("image/png", data=b"\x89PNG"),)),
    ]
    texts = [m.to_json() for m in messages]
    assert decode_records("[" + ",".join(texts) + "]", len(texts)) == messages
    assert [Message.from_json(t) for t in texts] == messages
    damaged = [
        '{"v":1,"role":"robot","content":"x"}',
        '{"v":1,"role":"user","content":3}',
        '{"v":3,"role":"user","content":"x"}',
        '{"role":"user","content":"x"}',
        '{"v":2,"role":"user","content":"x","images":[{"mime":"image/png","data":"!!"}]}',
        '{"v":2,"role":"user","content":"x","images":[{"mime":"text/plain","url":"https://x"}]}',
        '{"v":1,"role":"user","content":"x","tool_calls":[{"name":"f"}]}',
        '{"enc":"sealed"}',
        "[]",
    ]
    for text in damaged:
        assert decode_records(f"[{texts[0]},{text}]", 2) is None, text
        with pytest.raises((CorruptRecord, UnknownSchemaVersion)):
            Message.from_json(text, "s")
    assert decode_records(f"[{texts[0]},{texts[1]}]", 3) is None  # a record holding two values


def test_from_dict_of_a_subclass_builds_the_subclass() -> None:
    class Tagged(Message, frozen=True):
        tag: str = "default"

    built = Tagged.from_dict({"v": SCHEMA_VERSION, "role": "user", "content": "x"})
    assert type(built) is Tagged and built.tag == "default" and built.content == "x"


def test_unanswered_tool_calls_are_closed_where_their_results_belong() -> None:
    from agentsession import ToolCall, close_unanswered_tool_calls, unanswered_tool_calls
    from agentsession.messages import REPAIRED, UNANSWERED_TOOL_RESULT

    calls = (ToolCall("a", "add"), ToolCall("b", "mul"))
    history = [
        Message("user", "go"),
        Message("assistant", None, tool_calls=calls),
        Message("tool", "1", name="add", tool_call_id="a"),  # b never answered
        Message("user", "and?"),
        Message("assistant", None, tool_calls=(ToolCall("c", "add"),)),  # dangling at the end
    ]
    assert [c.id for c in unanswered_tool_calls(history)] == ["b", "c"]
    repaired = close_unanswered_tool_calls(history)
    assert [(m.role, m.tool_call_id) for m in repaired] == [
        ("user", None),
        ("assistant", None),
        ("tool", "a"),
        ("tool", "b"),
        ("user", None),
        ("assistant", None),
        ("tool", "c"),
    ]
    synthetic = [m for m in repaired if m.metadata.get(REPAIRED)]
    assert [m.name for m in synthetic] == ["mul", "add"]
    assert all(m.is_error and m.content == UNANSWERED_TOOL_RESULT for m in synthetic)
    assert unanswered_tool_calls(repaired) == []
    assert close_unanswered_tool_calls(repaired) == repaired  # idempotent
    assert close_unanswered_tool_calls(history[:1]) == history[:1]


def test_a_message_with_images_is_a_v2_record_and_round_trips() -> None:
    plain = Message("user", "hi")
    assert plain.to_dict()["v"] == SCHEMA_VERSION == 1  # records without images are unchanged
    pictured = Message("user", "what is this?", images=(Image("image/png", data=b"\x00\x01"),))
    record = pictured.to_dict()
    assert record["v"] == IMAGES_SCHEMA_VERSION and record["images"] == [
        {"mime": "image/png", "data": "AAE="}
    ]
    assert Message.from_json(pictured.to_json()) == pictured
    assert pictured.images[0].uri == "data:image/png;base64,AAE="
    for bad in ({"mime": "image/png", "data": "not base64!"}, {"mime": "text/html", "url": "https://x"},
                {"mime": "image/png"}, {"mime": "image/png", "url": "file:///etc/passwd"}):  # fmt: skip
        with pytest.raises(CorruptRecord):
            Message.from_dict({**record, "images": [bad]}, "s")
