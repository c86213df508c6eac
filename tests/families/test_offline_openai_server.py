"""The offline model behind a real OpenAI-compatible HTTP endpoint, called by the real ``openai``
client over real sockets."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

openai = pytest.importorskip("openai")

from agentsession.offline import user_messages_seen  # noqa: E402
from agentsession.offline.openai_server import OfflineOpenAIServer  # noqa: E402

ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Add two integers.",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}


@pytest.fixture(scope="module")
def server() -> Iterator[OfflineOpenAIServer]:
    with OfflineOpenAIServer() as running:
        yield running


def client(server: OfflineOpenAIServer) -> Any:
    return openai.OpenAI(base_url=server.base_url, api_key="x", max_retries=0, timeout=10)


def post(url: str, body: bytes, method: str = "POST") -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        url, data=body, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        with error:
            return error.code, json.loads(error.read())


def test_the_openai_client_gets_a_reply_that_counts_the_user_messages(
    server: OfflineOpenAIServer,
) -> None:
    completion = client(server).chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "My name is Ada."},
            {"role": "assistant", "content": "Hello Ada."},
            {"role": "user", "content": "what did I say earlier?"},
        ],
    )
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-") and completion.created > 0
    assert completion.model == "gpt-4o-mini"  # the model asked for
    choice = completion.choices[0]
    assert (choice.index, choice.finish_reason, choice.message.role) == (0, "stop", "assistant")
    assert choice.message.tool_calls is None
    text = choice.message.content
    assert user_messages_seen(text) == 2 and "Earlier you said: 'My name is Ada.'" in text
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.total_tokens) == (0, 0)


def test_replies_are_deterministic(server: OfflineOpenAIServer) -> None:
    messages = [{"role": "user", "content": "hello"}]
    replies = {
        client(server)
        .chat.completions.create(model="m", messages=messages)
        .choices[0]
        .message.content
        for _ in range(3)
    }
    assert replies == {"I have seen 1 user message. You said: 'hello'"}


def test_a_tool_call_round_trips_in_the_openai_shape(server: OfflineOpenAIServer) -> None:
    messages: list[dict[str, Any]] = [{"role": "user", "content": '/tool add {"a":1,"b":2}'}]
    first = client(server).chat.completions.create(model="m", messages=messages, tools=[ADD])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert (call.type, call.function.name) == ("function", "add")
    assert json.loads(call.function.arguments) == {"a": 1, "b": 2}

    messages.append(choice.message.model_dump(exclude_none=True))
    messages.append({"role": "tool", "tool_call_id": call.id, "content": "3"})
    second = client(server).chat.completions.create(model="m", messages=messages, tools=[ADD])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == ("I have seen 1 user message. Tool add returned: 3")


def test_a_speaker_selection_prompt_gets_one_name(server: OfflineOpenAIServer) -> None:
    completion = client(server).chat.completions.create(
        model="m",
        messages=[
            {"role": "system", "content": "Read the following conversation."},
            {"role": "user", "name": "user", "content": "@critic please"},
            {
                "role": "system",
                "content": "Read the above conversation. Then select the next role from "
                "['user', 'writer', 'critic'] to play. Only return the role.",
            },
        ],
    )
    assert completion.choices[0].message.content == "critic"


def test_streaming_is_refused_with_a_clear_400(server: OfflineOpenAIServer) -> None:
    with pytest.raises(openai.BadRequestError, match="streaming is not supported"):
        client(server).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    status, body = post(
        f"{server.base_url}/chat/completions",
        json.dumps({"model": "m", "messages": [], "stream": True}).encode(),
    )
    assert status == 400 and body["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"{not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"model": "m"}', "'messages' must be a list"),
        (b'{"model": "m", "messages": ["hi"]}', "'messages' must be a list"),
        (b'{"model": "m", "messages": [], "tools": "add"}', "'tools' must be a list"),
        (
            b'{"model": "m", "messages": [{"role": "assistant", "tool_calls": [{"id": 1}]}]}',
            "could not be read",
        ),
    ],
)
def test_a_malformed_body_is_a_400_saying_what_is_wrong(
    server: OfflineOpenAIServer, body: bytes, says: str
) -> None:
    status, answer = post(f"{server.base_url}/chat/completions", body)
    assert status == 400
    assert says in answer["error"]["message"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/embeddings"), ("POST", "/chat/completions"), ("GET", "/v1/models")],
)
def test_any_other_endpoint_is_a_404(server: OfflineOpenAIServer, method: str, path: str) -> None:
    status, answer = post(
        f"http://{server.host}:{server.port}{path}",
        b"{}" if method == "POST" else None,  # type: ignore[arg-type]
        method,
    )
    assert status == 404 and "/v1/chat/completions" in answer["error"]["message"]
    # the server still answers afterwards
    reply = client(server).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "still there?"}]
    )
    assert user_messages_seen(reply.choices[0].message.content) == 1


def test_two_servers_listen_on_their_own_ports() -> None:
    with OfflineOpenAIServer() as one, OfflineOpenAIServer() as two:
        assert one.port != two.port and one.base_url != two.base_url
        for running in (one, two):
            client(running).chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}]
            )
        client(two).chat.completions.create(model="m", messages=[{"role": "user", "content": "a"}])
        assert (one.completions, two.completions) == (1, 2)


def test_close_frees_the_port() -> None:
    server = OfflineOpenAIServer().start()
    kept_alive = client(server)  # its connection stays open between requests
    kept_alive.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    port = server.port
    server.close()
    server.close()  # closing twice is harmless
    with pytest.raises(RuntimeError, match="is closed"):
        server.start()
    for caller in (kept_alive, client(server)):  # the open connection ended too
        with pytest.raises(openai.APIConnectionError):
            caller.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    with socket.socket() as probe:  # the port can be bound again at once
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
    with OfflineOpenAIServer(port=port) as again:
        assert again.base_url == f"http://127.0.0.1:{port}/v1"
        client(again).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )


def test_it_is_quiet_by_default(capfd: pytest.CaptureFixture[str]) -> None:
    with OfflineOpenAIServer() as server:
        client(server).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}]
        )
        post(f"{server.base_url}/nowhere", b"{}")
    assert capfd.readouterr().err == ""


@pytest.mark.slow
def test_the_server_imports_no_autogen() -> None:
    code = (
        "import sys, agentsession.offline.openai_server; "
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('autogen', 'autogen_agentchat', 'ag2')]; "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
