"""One turn mechanism: ``run_turn``'s ``Turn``, ``stream``'s events and ``send``'s reply agree."""

from __future__ import annotations

import asyncio

from agentsession import AsyncSessionManager, SessionManager
from agentsession.offline import offline_agent_factory, user_messages_seen
from agentsession.turns import MessageEvent, TextDelta, Turn, TurnEnd, TurnEvent

ADD = '/tool add {"a": 2, "b": 2}'


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
    *rest, end = events
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


def test_a_streamed_tool_turn_reports_the_call_and_the_result() -> None:
    from agentsession.offline.agentchat import build_agent

    def add(a: int, b: int) -> int:
        return a + b

    with SessionManager(lambda: build_agent(tools=[add]), "memory://") as manager:
        events = list(manager.session().stream(ADD))
    kinds = [e.kind for e in events if isinstance(e, MessageEvent)]
    assert kinds == ["message", "tool_call", "tool_result", "message"]
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
