"""One turn mechanism: ``run_turn``'s ``Turn``, ``stream``'s events and ``send``'s reply agree."""

from __future__ import annotations

import asyncio

import pytest
from conftest import family_installed
from packaging.version import Version

from agentsession import (
    AsyncSessionManager,
    InvalidInput,
    Message,
    OwnerMismatch,
    SessionManager,
)
from agentsession.offline import offline_agent_factory, user_messages_seen
from agentsession.turns import MessageEvent, TextDelta, Turn, TurnEnd, TurnEvent, TurnStart

ADD = '/tool add {"a": 2, "b": 2}'
STREAMING_CLIENT = Version("0.4.4")  # AssistantAgent(model_client_stream=...)
agentchat_only = pytest.mark.skipif(
    not family_installed("agentchat"), reason="an agentchat feature; agentchat is not installed"
)


def test_run_turn_returns_the_turn_as_a_sequence_of_its_messages(family: str) -> None:
    with SessionManager(offline_agent_factory(family), "memory://") as manager:
        session = manager.session()
        turn = session.run_turn("hello")
        assert isinstance(turn, Turn)
        assert [m.role for m in turn] == ["user", "assistant"]
        assert turn[-1] is turn.messages[-1] and len(turn) == 2
        assert turn.reply == turn[-1].content and user_messages_seen(turn.reply) == 1
        assert turn.speaker == "assistant"
        assert not turn.replayed
        assert list(session.history()) == list(turn)


@agentchat_only
def test_agentchat_reports_the_model_usage_of_a_turn() -> None:
    with SessionManager(offline_agent_factory("agentchat"), "memory://") as manager:
        turn = manager.session().run_turn("hello there")
    assert turn.usage is not None
    assert turn.usage.prompt_tokens > 0 and turn.usage.completion_tokens > 0


def test_stream_yields_every_message_in_order_then_the_turn(family: str, store_url: str) -> None:
    async def run() -> tuple[list[TurnEvent], list[str | None]]:
        async with AsyncSessionManager(offline_agent_factory(family), store_url) as manager:
            session = manager.session()
            await session.send("hello")
            events = [event async for event in session.stream("what did I say earlier?")]
            return events, [m.content for m in await session.history()]

    events, stored = asyncio.run(run())
    start, *rest, end = events
    assert isinstance(start, TurnStart) and start.turn_id and start.seq == 0
    assert [event.seq for event in events] == list(range(len(events)))
    # deltas come where the family's client streams (the maf offline client does)
    messages = [event for event in rest if not isinstance(event, TextDelta)]
    assert isinstance(end, TurnEnd)
    assert all(isinstance(event, MessageEvent) for event in messages)
    assert [e.message for e in messages if isinstance(e, MessageEvent)] == list(end.turn)
    assert stored[2:] == [m.content for m in end.turn]
    assert user_messages_seen(end.turn.reply) == 2


def test_stream_and_send_store_the_same_transcript(family: str) -> None:
    def transcript(streamed: bool) -> list[tuple[str, str | None, str | None]]:
        with SessionManager(offline_agent_factory(family), "memory://") as manager:
            session = manager.session()
            for text in ("hello", "what did I say earlier?"):
                if streamed:
                    assert isinstance(list(session.stream(text))[-1], TurnEnd)
                else:
                    session.send(text)
            return [(m.role, m.name, m.content) for m in session.history()]

    assert transcript(streamed=True) == transcript(streamed=False)


@agentchat_only
def test_a_streamed_tool_turn_reports_the_call_and_the_result() -> None:
    from agentsession.offline.agentchat import build_agent

    def add(a: int, b: int) -> int:
        return a + b

    with SessionManager(lambda: build_agent(tools=[add]), "memory://") as manager:
        events = list(manager.session().stream(ADD))
    kinds = [e.kind for e in events if isinstance(e, MessageEvent)]
    assert kinds == ["message", "tool_call", "tool_result", "message"]
    assert isinstance(events[0], TurnStart)
    assert events[-1].to_dict()["type"] == "end"


def test_a_reader_that_leaves_early_does_not_lose_the_turn(family: str) -> None:
    async def run() -> int:
        async with AsyncSessionManager(offline_agent_factory(family), "memory://") as manager:
            session = manager.session()
            events = session.stream("hello")
            async for _ in events:
                break  # the reader leaves after the first event
            await events.aclose()  # type: ignore[attr-defined]
            for _ in range(200):  # the turn goes on without its reader
                if len(await session.history()) == 2:
                    break
                await asyncio.sleep(0.01)
            return len(await session.history())

    assert asyncio.run(run()) == 2


def test_sync_stream_over_the_loop_thread(family: str) -> None:
    with SessionManager(offline_agent_factory(family), "memory://") as manager:
        session = manager.session()
        events = list(session.stream("hello"))
        assert isinstance(events[-1], TurnEnd)
        assert [e.message.role for e in events if isinstance(e, MessageEvent)] == [
            "user",
            "assistant",
        ]
        assert len(session.history()) == 2


# -- history pages, undo, and messages recorded without a turn ------------------------------


def test_history_pages_from_the_newest(family: str, store_url: str) -> None:
    with SessionManager(offline_agent_factory(family), store_url) as manager:
        session = manager.session()
        for i in range(5):
            session.send(f"message {i}")
        everything = session.history()
        assert session.history(limit=3) == everything[-3:]
        assert session.history(limit=4, before=6) == everything[2:6]
        assert session.history(limit=4, before=2) == everything[:2]
        assert session.history(before=4) == everything[:4]
        assert session.history(limit=0) == [] and session.history(limit=50) == everything
        assert manager.session().history(limit=5) == []
        with pytest.raises(InvalidInput):
            session.history(limit=-1)


def test_pop_turn_undoes_the_last_turn(family: str, store_url: str) -> None:
    with SessionManager(offline_agent_factory(family), store_url) as manager:
        session = manager.session()
        session.send("keep me")
        session.send("undo me")
        removed = session.pop_turn()
        assert removed[0].content == "undo me" and len(removed) == 2
        assert session.history()[0].content == "keep me" and len(session.history()) == 2
        reply = session.send("what did I say earlier?")
        assert "undo me" not in reply and user_messages_seen(reply) == 2
        assert manager.session().pop_turn() == []


@agentchat_only
def test_pop_turn_takes_a_whole_tool_turn() -> None:
    from agentsession.offline.agentchat import build_agent

    def add(a: int, b: int) -> int:
        return a + b

    with SessionManager(lambda: build_agent(tools=[add]), "memory://") as manager:
        session = manager.session()
        session.send("hello")
        session.send(ADD)
        assert [m.role for m in session.pop_turn()] == ["user", "assistant", "tool", "assistant"]
        assert len(session.history()) == 2


def test_appended_messages_are_seen_by_the_next_turn(family: str, store_url: str) -> None:
    with SessionManager(offline_agent_factory(family), store_url) as manager:
        session = manager.session()
        session.send("first")  # a live agent is cached...
        session.append(
            [Message("user", "seeded question"), Message("assistant", "a human answered")]
        )
        reply = session.send("what did I say earlier?")  # ...and rebuilt with the appended ones
        assert user_messages_seen(reply) == 3 and "seeded question" in reply
        manager.set_metadata(session.id, {}, owner="zoe")  # the first user binds it
        with pytest.raises(OwnerMismatch):
            manager.append(session.id, [Message("user", "x")], owner="yann")
        with pytest.raises(OwnerMismatch):
            manager.pop_turn(session.id, owner="yann")
        assert len(session.history()) == 6


@agentchat_only
def test_a_streaming_model_client_streams_text_deltas() -> None:
    from agentsession.families._gates import at_least
    from agentsession.families.agentchat import AgentChatFamily
    from agentsession.offline.agentchat import build_agent

    if not at_least(AgentChatFamily().check_version(), STREAMING_CLIENT):
        pytest.skip("model_client_stream arrived in autogen-agentchat 0.4.4")
    factory = lambda: build_agent(model_client_stream=True, chunk_words=2)  # noqa: E731
    with SessionManager(factory, "memory://") as manager:
        session = manager.session()
        events = list(session.stream("hello there"))
        deltas = [e.text for e in events if isinstance(e, TextDelta)]
        reply = events[-1]
        assert isinstance(reply, TurnEnd) and len(deltas) > 2
        assert "".join(deltas) == reply.turn.reply == session.history()[-1].content
        kinds = [type(e).__name__ for e in events]
        assert kinds[:2] == ["TurnStart", "MessageEvent"]  # the user's message, then the text
        assert kinds[-2:] == ["MessageEvent", "TurnEnd"]


# -- images ---------------------------------------------------------------------------------

PNG = bytes.fromhex(  # a 2x2 red PNG, as PIL writes it
    "89504e470d0a1a0a0000000d4948445200000002000000020802000000fdd49a730000001649444154789c63fc"
    "cfc0c0c0c0c0c4c0c0c0c0c000000d1d01036ac29be90000000049454e44ae426082"
)


@pytest.mark.parametrize("family", ["legacy", "agentchat"])
def test_a_turn_carries_images_that_round_trip(family: str, durable_store_url: str) -> None:
    from agentsession import Image

    if not family_installed(family):
        pytest.skip(f"the {family} family is not installed")
    with SessionManager(offline_agent_factory(family), durable_store_url) as manager:
        session = manager.session()
        reply = session.send("what is in this picture?", images=[Image("image/png", data=PNG)])
        assert "I have seen 1 image; the last: image/png" in reply  # the model was shown it
        stored = session.history()[0]
        assert stored.content == "what is in this picture?" and len(stored.images) == 1
        assert stored.images[0].mime == "image/png" and stored.images[0].data
    with SessionManager(offline_agent_factory(family), durable_store_url) as fresh:
        again = fresh.send(session.id, "what did I say earlier?")  # rebuilt from the store
        assert "I have seen 1 image" in again and user_messages_seen(again) == 2


def test_image_limits_and_families_without_images() -> None:
    from agentsession import FamilyError, Image, MessageTooLarge

    with SessionManager(offline_agent_factory(), "memory://", max_image_bytes=10) as manager:
        session = manager.session()
        with pytest.raises(MessageTooLarge, match="max_image_bytes"):
            session.send("big", images=[Image("image/png", data=b"x" * 11)])
        assert session.history() == []
    if family_installed("agentchat"):
        from agentsession.offline import offline_team_factory

        team = SessionManager(offline_team_factory("agentchat"), "memory://")
        with team, pytest.raises(FamilyError, match="cannot take images"):
            team.session().send("look", images=[Image("image/png", data=PNG)])
        agent = SessionManager(offline_agent_factory("agentchat"), "memory://")
        with agent, pytest.raises(FamilyError, match="bytes, not a link"):
            agent.session().send("look", images=[Image(url="https://example.com/a.png")])
