"""Streamed turns as Server-Sent Events behind every adapter: the same cookies, headers and
error answers as any turn, an ``error`` event (never a cut stream) for a failure after the
first byte, and a resume endpoint that replays what a reconnecting client missed."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from support import ADAPTERS, Harness, cookie_token

from agentsession.offline import user_messages_seen
from agentsession.offline.agentchat import OfflineChatCompletionClient, build_agent

MakeHarness = Callable[..., Harness]


@pytest.fixture(params=ADAPTERS)
def make(request: pytest.FixtureRequest) -> Iterator[MakeHarness]:
    made: list[Harness] = []

    def build(**options: Any) -> Harness:
        options.setdefault("factory", lambda: build_agent(model_client_stream=True, chunk_words=2))
        harness = Harness(str(request.param), **options)
        made.append(harness)
        return harness

    yield build
    for harness in made:
        harness.close()


def events(response: httpx.Response) -> list[dict[str, Any]]:
    """The SSE messages of a response: id, event and the JSON of data."""
    parsed = []
    for block in response.text.split("\n\n"):
        fields: dict[str, Any] = {}
        for line in block.splitlines():
            if line.startswith(":"):
                continue  # a keep-alive comment
            name, _, value = line.partition(": ")
            fields[name] = json.loads(value) if name == "data" else value
        if fields:
            parsed.append(fields)
    return parsed


def test_a_streamed_turn_is_sse_and_is_stored(make: MakeHarness) -> None:
    client = make().client()
    response = client.post("/stream", json={"text": "hello"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert cookie_token(response) is not None  # the session's cookie, as for any turn
    got = events(response)
    kinds = [e["event"] for e in got]
    assert kinds[0] == "start" and kinds[-1] == "end" and "delta" in kinds
    turn_id = got[0]["data"]["turn_id"]
    assert [e["id"] for e in got] == [f"{turn_id}:{i}" for i in range(len(got))]
    reply = got[-1]["data"]["turn"]["reply"]
    assert "".join(e["data"]["text"] for e in got if e["event"] == "delta") == reply
    assert client.get("/history").json()["messages"][-1] == reply
    followed = client.say("what did I say earlier?")  # the same conversation goes on
    assert user_messages_seen(followed.json()["reply"]) == 2


def test_a_reconnecting_client_gets_what_it_missed(make: MakeHarness) -> None:
    client = make().client()
    got = events(client.post("/stream", json={"text": "hello"}))
    seen = got[2]["id"]  # the connection dropped after the third event
    rest = events(client.get("/stream", headers={"Last-Event-ID": seen}))
    assert [e["id"] for e in rest] == [e["id"] for e in got[3:]]
    assert rest[-1]["event"] == "end"
    by_query = events(client.get("/stream?after=1"))
    assert [e["id"] for e in by_query] == [e["id"] for e in got[2:]]
    newer = events(client.get("/stream", headers={"Last-Event-ID": "another-turn:3"}))
    assert [e["id"] for e in newer] == [e["id"] for e in got]  # a newer turn: from its start


def test_nothing_to_resume_is_410(make: MakeHarness) -> None:
    response = make().client().get("/stream")
    assert response.status_code == 410 and response.json()["code"] == "no_journal"


def test_errors_before_the_first_event_are_the_usual_answers(make: MakeHarness) -> None:
    harness = make(max_message_bytes=10)
    client = harness.client()
    response = client.post("/stream", json={"text": "x" * 11})
    assert response.status_code == 413 and response.json()["code"] == "message_too_large"
    bad = b'{"text": "abc\\ud800"}'  # valid JSON, a lone surrogate: no store can hold it
    response = client.post("/stream", content=bad, headers={"content-type": "application/json"})
    assert response.status_code == 400 and response.json()["code"] == "invalid_input"
    assert client.get("/history").json()["messages"] == []


def test_a_busy_conversation_is_409_before_any_byte(make: MakeHarness) -> None:
    harness = make(lock_timeout=0.1)
    client = harness.client()
    client.say("one")
    stored = harness.run(harness.store.list())[0].session_id
    token = harness.run(harness.store.acquire(stored, 30))  # another worker's turn holds it
    response = client.post("/stream", json={"text": "two"})
    assert response.status_code == 409 and response.headers["retry-after"] == "1"
    harness.run(harness.store.release(stored, token))
    assert client.post("/stream", json={"text": "two"}).status_code == 200


class _Failing(OfflineChatCompletionClient):
    async def create(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the model provider is down")


def test_a_failure_after_the_first_byte_is_an_error_event(make: MakeHarness) -> None:
    from autogen_agentchat.agents import AssistantAgent

    harness = make(factory=lambda: AssistantAgent("assistant", model_client=_Failing()))
    client = harness.client()
    response = client.post("/stream", json={"text": "hello"})
    assert response.status_code == 200
    got = events(response)
    assert got[0]["event"] == "start" and got[-1]["event"] == "error"
    assert got[-1]["data"]["code"] == "internal_error"
    assert "provider" not in response.text  # server details stay in the log
    assert client.get("/history").json()["messages"] == []  # nothing of the turn
