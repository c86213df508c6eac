"""Legacy group chats (``GroupChat`` + ``GroupChatManager``) through the engine, on every
legacy install, driven by the offline model."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import family_installed

if not family_installed("legacy"):
    pytest.skip("the legacy AutoGen family is not installed", allow_module_level=True)

from autogen import GroupChat, GroupChatManager
from team_support import assert_replies_saw_the_thread, records, texts

from agentsession import (
    AsyncSessionManager,
    FamilyError,
    SessionManager,
    TeamMismatch,
    rename_speakers,
)
from agentsession.families import driver_for
from agentsession.offline.legacy import OfflineModelClient, build_group_chat, build_member
from agentsession.offline.openai_server import OfflineOpenAIServer
from agentsession.turns import MessageEvent, TurnEnd

HAS_AUTO_CLIENT = "select_speaker_auto_model_client_cls" in {
    f.name for f in dataclasses.fields(GroupChat)
}
STOP = "TERMINATE"


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def round_robin() -> Any:
    return build_group_chat("round_robin", tools=[add])


def random_with_transitions() -> Any:
    # "random" among the allowed next speakers, one each: the order is fixed, the method is not
    user, manager = build_group_chat("round_robin", tools=[add])
    groupchat = manager.groupchat
    by_name = {agent.name: agent for agent in groupchat.agents}
    chat = GroupChat(
        groupchat.agents,
        messages=[],
        max_round=10,
        speaker_selection_method="random",
        allowed_or_disallowed_speaker_transitions={
            by_name["user"]: [by_name["writer"]],
            by_name["writer"]: [by_name["critic"]],
            by_name["critic"]: [by_name["user"]],
        },
        speaker_transitions_type="allowed",
    )
    return user, GroupChatManager(
        chat, llm_config=False, is_termination_msg=manager._is_termination_msg
    )


@pytest.fixture(scope="module")
def selector() -> Iterator[OfflineOpenAIServer]:
    """The offline model over HTTP, for pyautogen 0.2.35's ``auto`` selector (its GroupChat
    has no ``select_speaker_auto_model_client_cls``); unused where it has one."""
    with OfflineOpenAIServer() as server:
        yield server


def auto(selector_base_url: str | None = None) -> Callable[[], Any]:
    return lambda: build_group_chat("auto", tools=[add], selector_base_url=selector_base_url)


def assert_the_selector_ran_where_it_should(server: OfflineOpenAIServer, before: int) -> None:
    if HAS_AUTO_CLIENT:  # the offline client runs in-process; the URL is not used
        assert server.completions == before
    else:  # 0.2.35's own selector called the server through its OpenAI client
        assert server.completions > before


def manager_alone() -> Any:
    writer = build_member("writer")
    critic = build_member("critic", terminate=STOP)
    chat = GroupChat(
        [writer, critic], messages=[], max_round=5, speaker_selection_method="round_robin"
    )
    return GroupChatManager(
        chat, llm_config=False, is_termination_msg=lambda m: STOP in str(m.get("content"))
    )


KINDS: dict[str, Callable[[], Any]] = {
    "round_robin": round_robin,
    "random_with_transitions": random_with_transitions,
    "manager_alone": manager_alone,
    "auto": auto(),  # on 0.2.35 the test passes selector_base_url
}
TURNS = ["hello", "how are you?", "third"]


def speakers(turn: Any) -> list[str | None]:
    return [m.name for m in turn]


def test_auto_needs_the_auto_model_client_option_on_old_pyautogen() -> None:
    if HAS_AUTO_CLIENT:
        assert auto()()
    else:
        with pytest.raises(ValueError, match="select_speaker_auto_model_client_cls") as raised:
            auto()()
        assert "selector_base_url=" in str(raised.value)
        assert "OfflineOpenAIServer" in str(raised.value)


def test_auto_on_old_pyautogen_gives_the_manager_the_servers_llm_config(
    selector: OfflineOpenAIServer,
) -> None:
    _, manager = auto(selector.base_url)()
    if HAS_AUTO_CLIENT:
        assert manager.groupchat.select_speaker_auto_model_client_cls is OfflineModelClient
        (config,) = manager.llm_config["config_list"]  # a dict, or ag2's pydantic entry
        assert selector.base_url not in repr(config)
    else:
        (config,) = manager.llm_config["config_list"]
        assert config["base_url"] == selector.base_url and config["api_key"] == "offline"
        assert manager.llm_config["cache_seed"] is None
    assert manager.groupchat.speaker_selection_method == "auto"


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_group_chat_survives_a_new_manager(
    kind: str, durable_store_url: str, selector: OfflineOpenAIServer
) -> None:
    factory = auto(selector.base_url) if kind == "auto" else KINDS[kind]
    before = selector.completions
    with SessionManager(factory, durable_store_url) as manager:
        session = manager.session()
        for text in TURNS:
            turn = session.run_turn(text)
            assert turn.stop_reason == "termination message from 'critic'"
        session_id = session.id
    del manager, session
    gc.collect()

    with SessionManager(factory, durable_store_url) as fresh:
        turn = fresh.session(session_id).run_turn("fourth")
        log = fresh.history(session_id)
    with SessionManager(factory, "memory://") as cached:
        same = cached.session()
        for text in TURNS:
            same.run_turn(text)
        expected = same.run_turn("fourth")

    assert texts(turn) == texts(expected)  # a rebuilt group chat answers as the live one would
    assert speakers(turn) == ["user", "writer", "critic"]
    assert assert_replies_saw_the_thread(log) == 8
    assert all(m.name for m in log)
    assert len(records(log)) == 4
    if kind == "auto":
        assert_the_selector_ran_where_it_should(selector, before)
    else:
        assert selector.completions == before


def test_auto_selection_asks_the_model(store_url: str, selector: OfflineOpenAIServer) -> None:
    before = selector.completions
    with SessionManager(auto(selector.base_url), store_url) as manager:
        session = manager.session()
        assert speakers(session.run_turn("hello")) == ["user", "writer", "critic"]
        assert speakers(session.run_turn("@critic only you")) == ["user", "critic"]
    assert_the_selector_ran_where_it_should(selector, before)


def test_a_tool_call_inside_the_group_runs_on_the_user_proxy_and_round_trips(
    durable_store_url: str,
) -> None:
    with SessionManager(round_robin, durable_store_url) as manager:
        session = manager.session()
        turn = session.run_turn('/tool add {"a": 2, "b": 2}')
        assert [m.role for m in turn] == ["user", "assistant", "tool", "assistant", "assistant"]
        assert speakers(turn)[:2] == ["user", "writer"]
        assert (turn[2].name, turn[2].content, turn[2].tool_call_id) == (
            "add",
            "4",
            turn[1].tool_calls[0].id,
        )
        assert "Tool add returned: 4" in (turn[3].content or "")
        session_id = session.id
    with SessionManager(round_robin, durable_store_url) as fresh:
        fresh.session(session_id).run_turn("and now?")
        log = fresh.history(session_id)
    assert [m.role for m in log[:5]] == ["user", "assistant", "tool", "assistant", "assistant"]
    assert assert_replies_saw_the_thread(log) == 4


def test_building_the_group_chat_runs_nothing() -> None:
    user, manager = round_robin()
    driver_for((user, manager))
    assert manager.groupchat.messages == []
    assert all(not agent.chat_messages for agent in manager.groupchat.agents)


def test_two_conversations_of_one_group_factory_never_meet(store_url: str) -> None:
    with SessionManager(round_robin, store_url) as manager:
        alice, bob = manager.session(), manager.session()
        alice.send("alice's secret is 1")
        reply = bob.send("bob is here")
        assert "I have seen 1 user message" in reply and "secret" not in reply
        assert all("bob" not in (m.content or "") for m in alice.history())


def test_concurrent_turns_on_one_group_conversation_are_whole_and_in_order(tmp_path: Path) -> None:
    async def run() -> list[Any]:
        async with AsyncSessionManager(round_robin, f"sqlite:///{tmp_path / 'g.db'}") as manager:
            session = manager.session()
            await asyncio.gather(*(session.run_turn(f"turn {i}") for i in range(20)))
            return await session.history()

    log = asyncio.run(run())
    assert len(log) == 60
    for block in range(20):
        assert speakers(log[3 * block : 3 * block + 3]) == ["user", "writer", "critic"]
    assert sorted(m.content for m in log if m.role == "user") == sorted(
        f"turn {i}" for i in range(20)
    )
    assert assert_replies_saw_the_thread(log) == 40


def test_stream_yields_each_members_message_in_order(store_url: str) -> None:
    with SessionManager(round_robin, store_url) as manager:
        events = list(manager.session().stream("hello"))
    assert isinstance(events[-1], TurnEnd)
    messages = [e.message for e in events if isinstance(e, MessageEvent)]
    assert texts(messages) == texts(events[-1].turn)
    assert speakers(messages) == ["user", "writer", "critic"]


def test_max_round_ends_a_turn_and_stores_what_happened(store_url: str) -> None:
    def factory() -> Any:
        user, manager = build_group_chat("round_robin", max_round=2)
        return user, manager

    with SessionManager(factory, store_url) as manager:
        session = manager.session()
        turn = session.run_turn("hello")
        assert speakers(turn) == ["user", "writer"]
        assert turn.stop_reason == "max_round (2) reached"
        assert len(session.history()) == 2


def test_a_group_turn_that_ends_before_anyone_spoke_stores_nothing(store_url: str) -> None:
    def factory() -> Any:
        return build_group_chat("round_robin", max_round=1)

    with SessionManager(factory, store_url) as manager:
        session = manager.session()
        with pytest.raises(
            FamilyError, match=r"before any agent spoke \(max_round \(1\) reached\)"
        ):
            session.send("hello")
        assert session.history() == []


def test_a_failing_member_fails_the_turn_naming_it(store_url: str) -> None:
    def factory() -> Any:
        user, manager = build_group_chat("round_robin")
        critic = manager.groupchat.agent_by_name("critic")

        def broken(*args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("the provider is down")

        critic.register_reply([object, None], lambda *a, **k: broken(), position=0)
        return user, manager

    with SessionManager(factory, store_url) as manager:
        session = manager.session()
        with pytest.raises(FamilyError, match=r"'critic'.*ConnectionError: the provider is down"):
            session.send("hello")
        assert session.history() == []


def test_participants_changed_since_the_conversation_was_stored(durable_store_url: str) -> None:
    with SessionManager(manager_alone, durable_store_url) as manager:
        session = manager.session()
        session.send("hello")
        session_id = session.id
        stored = manager.history(session_id)

    def renamed_group() -> Any:
        writer, editor = build_member("writer"), build_member("editor", terminate=STOP)
        chat = GroupChat(
            [writer, editor], messages=[], max_round=5, speaker_selection_method="round_robin"
        )
        return GroupChatManager(
            chat, llm_config=False, is_termination_msg=lambda m: STOP in str(m.get("content"))
        )

    with SessionManager(renamed_group, durable_store_url) as changed:
        with pytest.raises(TeamMismatch, match="'critic'"):
            changed.session(session_id).send("again")
        assert texts(changed.history(session_id)) == texts(stored)

    def mapped() -> Any:
        return rename_speakers(renamed_group(), {"critic": "editor"})

    with SessionManager(mapped, durable_store_url) as renamed:
        turn = renamed.session(session_id).run_turn("again")
    assert "1 reply from editor" in (turn[1].content or "")


def test_parts_name_every_object_one_group_chat_owns() -> None:
    user, manager = round_robin()
    parts = list(driver_for((user, manager)).parts())
    assert parts[0] is manager and any(p is manager.groupchat for p in parts)
    assert all(any(p is agent for p in parts) for agent in manager.groupchat.agents)
