"""What a model error or timeout does to a turn: the error reaches the caller unchanged, nothing
of the turn is stored, the next turn runs normally; behind the adapters it is a 500 unless the
app handles it (docs/real-model.md says the same)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from agentsession import AsyncSessionManager, SessionManager

FAIL = {"next": 0}


class ModelTimeout(TimeoutError):
    """What a provider's client raises when the model does not answer in time."""


def failing_factory(family: str) -> Callable[[], Any]:
    """An offline agent whose model raises ``ModelTimeout`` while ``FAIL["next"]`` > 0."""
    if family == "agentchat":
        from autogen_agentchat.agents import AssistantAgent

        from agentsession.offline.agentchat import OfflineChatCompletionClient

        class Flaky(OfflineChatCompletionClient):
            async def create(self, messages: Any, **kwargs: Any) -> Any:
                if FAIL["next"] > 0:
                    FAIL["next"] -= 1
                    raise ModelTimeout("the model did not answer within 30 s")
                return await super().create(messages, **kwargs)

        return lambda: AssistantAgent("assistant", model_client=Flaky())

    from autogen import ConversableAgent

    from agentsession.offline.legacy import OfflineModelClient

    class FlakyLegacy(OfflineModelClient):
        def create(self, params: Any) -> Any:
            if FAIL["next"] > 0:
                FAIL["next"] -= 1
                raise ModelTimeout("the model did not answer within 30 s")
            return super().create(params)

    def build() -> Any:
        config = {"config_list": [{"model": "offline", "model_client_cls": "FlakyLegacy"}]}
        assistant = ConversableAgent(
            "assistant", llm_config={**config, "cache_seed": None}, human_input_mode="NEVER"
        )
        assistant.register_model_client(model_client_cls=FlakyLegacy)
        return assistant

    return build


@pytest.fixture(autouse=True)
def _reset() -> None:
    FAIL["next"] = 0


def test_a_model_error_propagates_and_stores_nothing(family: str, store_url: str) -> None:
    with SessionManager(failing_factory(family), store_url) as manager:
        session = manager.session()
        session.send("my name is Ada")
        FAIL["next"] = 1
        with pytest.raises(ModelTimeout, match="did not answer"):
            session.send("this turn fails")
        assert [m.content for m in session.history() if m.role == "user"] == ["my name is Ada"]
        reply = session.send("what did I say earlier?")  # the model is back
    assert "I have seen 2 user messages" in reply and "this turn fails" not in reply


def test_a_failed_first_turn_leaves_an_empty_conversation(family: str) -> None:
    with SessionManager(failing_factory(family), "memory://") as manager:
        session = manager.session()
        FAIL["next"] = 1
        with pytest.raises(ModelTimeout):
            session.send("hello")
        assert session.history() == []
        assert "I have seen 1 user message" in session.send("hello again")


def flask_app(family: str, handle: bool) -> Any:
    flask = pytest.importorskip("flask")
    from agentsession.adapters.flask import AgentSession, current_session

    app = flask.Flask(__name__)
    app.secret_key = "a test key that is long enough to sign ids with"
    AgentSession(app, factory=failing_factory(family), store="memory://")

    @app.post("/chat")
    def chat() -> Any:
        return {"reply": current_session.send(flask.request.json["message"])}

    if handle:

        @app.errorhandler(ModelTimeout)
        def model_timeout(exc: ModelTimeout) -> Any:
            return {"detail": "The model is slow right now; try again."}, 503

    return app


@pytest.mark.parametrize("handle", [False, True])
def test_behind_flask_it_is_a_500_unless_the_app_handles_it(family: str, handle: bool) -> None:
    client = flask_app(family, handle).test_client()
    assert client.post("/chat", json={"message": "hello"}).status_code == 200
    FAIL["next"] = 1
    failed = client.post("/chat", json={"message": "lost"})
    if handle:
        assert failed.status_code == 503 and "slow" in failed.json["detail"]
    else:
        assert failed.status_code == 500
    again = client.post("/chat", json={"message": "what did I say earlier?"})
    assert "I have seen 2 user messages" in again.json["reply"]


@pytest.mark.parametrize("handle", [False, True])
def test_behind_asgi_it_is_a_500_unless_the_app_handles_it(handle: bool) -> None:
    pytest.importorskip("starlette")
    pytest.importorskip("autogen_agentchat")
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from agentsession.adapters.asgi import AgentSessionMiddleware, get_session

    manager = AsyncSessionManager(failing_factory("agentchat"), "memory://")

    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        return JSONResponse({"reply": await get_session(request).send(body["message"])})

    async def model_timeout(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": "The model is slow right now; try again."}, 503)

    app = Starlette(
        routes=[Route("/chat", chat, methods=["POST"])],
        middleware=[Middleware(AgentSessionMiddleware, manager=manager, secret_key="k" * 32)],
        exception_handlers={ModelTimeout: model_timeout} if handle else {},
    )

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            ok = await client.post("/chat", json={"message": "hello"})
            FAIL["next"] = 1
            failed = await client.post("/chat", json={"message": "lost"})
            again = await client.post("/chat", json={"message": "what did I say earlier?"})
            return [ok, failed, again]

    ok, failed, again = asyncio.run(run())
    assert ok.status_code == 200
    assert failed.status_code == (503 if handle else 500)
    assert "I have seen 2 user messages" in again.json()["reply"]
