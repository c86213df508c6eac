"""The offline model's team behaviour, without AutoGen: member replies and speaker selection."""

from __future__ import annotations

from agentsession import Message
from agentsession.offline import (
    compose_reply,
    own_replies_seen,
    replies_seen,
    select_next_speaker,
    user_messages_seen,
)

AGENTCHAT_PROMPT = """You are in a role play game. The following roles are available:
writer: Writes.
editor: Edits.
critic: Criticises.
Read the following conversation. Then select the next role from {participants} to play. Only return the role.

user: hello

writer: I am writer; I have seen 1 user message.

Read the above conversation. Then select the next role from {participants} to play. Only return the role.
"""


def thread() -> list[Message]:
    return [
        Message("system", "You are critic."),
        Message("user", "hello", name="ada"),
        Message("user", "I am writer; …", name="writer"),
        Message("assistant", "I am critic; …", name="critic"),
        Message("user", "more?", name="ada"),
        Message("user", "I am writer; again", name="writer"),
    ]


def test_a_member_says_who_it_is_and_what_it_saw() -> None:
    reply = compose_reply(thread(), "critic", terminate="TERMINATE").text or ""
    assert reply.startswith("I am critic; I have seen 2 user messages, 2 replies from writer")
    assert user_messages_seen(reply) == 2
    assert replies_seen(reply, "writer") == 2 and replies_seen(reply, "editor") == 0
    assert own_replies_seen(reply) == 1
    assert reply.endswith("You said: 'more?' TERMINATE")


def test_a_single_agent_reply_is_unchanged() -> None:
    history = [Message("user", "hello", name="user")]
    assert compose_reply(history).text == "I have seen 1 user message. You said: 'hello'"


def test_a_member_hands_off_only_when_offered_the_transfer_tool() -> None:
    history = [Message("user", "/handoff critic please", name="user")]
    assert compose_reply(history, "writer").tool_call is None
    call = compose_reply(history, "writer", tools=["transfer_to_critic"]).tool_call
    assert call is not None and call.name == "transfer_to_critic"


def test_a_member_calls_a_tool_only_on_the_users_own_message() -> None:
    history = [Message("user", '/tool add {"a": 1}', name="user")]
    assert compose_reply(history, "writer").tool_call is not None
    history.append(Message("user", "I am writer; Tool add returned: 1", name="writer"))
    assert compose_reply(history, "critic").tool_call is None


def test_the_agentchat_selector_prompt_is_answered_in_roles_order() -> None:
    prompt = AGENTCHAT_PROMPT.format(participants=["editor", "critic"])
    assert select_next_speaker([Message("user", prompt, name="user")]) == "editor"


def test_a_mention_in_the_latest_message_picks_the_speaker() -> None:
    prompt = AGENTCHAT_PROMPT.replace("writer: I am writer", "writer: ask @critic, I am writer")
    prompt = prompt.format(participants=["editor", "critic"])
    assert select_next_speaker([Message("system", prompt)]) == "critic"


def test_the_legacy_auto_prompt_is_answered_from_the_named_messages() -> None:
    agents = "['user', 'writer', 'critic']"
    history = [
        Message(
            "system",
            "You are in a role play game. The following roles are available:\n"
            "user: The human.\nwriter: Writes.\ncritic: Criticises..\n"
            f"Read the following conversation.\nThen select the next role from {agents} to play.",
        ),
        Message("user", "hello", name="user"),
        Message("user", "I am writer", name="writer"),
        Message(
            "system",
            f"Read the above conversation. Then select the next role from {agents} to play.",
        ),
    ]
    assert select_next_speaker(history) == "critic"


def test_other_text_is_no_selection_prompt() -> None:
    assert select_next_speaker([Message("user", "select a role", name="user")]) is None
