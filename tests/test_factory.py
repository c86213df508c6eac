"""Which factories get the ``SessionContext``: a required positional parameter, or one named or
annotated as the context. Anything else is called with no arguments."""

from __future__ import annotations

from typing import Any

import pytest

from agentsession import SessionContext, SessionManager
from agentsession.manager import _factory_takes_context
from agentsession.offline import offline_agent_factory, user_messages_seen


def test_the_offline_build_agent_is_a_factory_as_it_stands() -> None:
    pytest.importorskip("autogen_agentchat")
    from agentsession.offline.agentchat import build_agent

    # build_agent(system_message=..., tools=...): optional parameters, so it is called bare;
    # it used to get the context as its system message and fail inside AutoGen
    with SessionManager(build_agent, "memory://") as manager:
        session = manager.session()
        session.send("hello")
        assert user_messages_seen(session.send("what did I say earlier?")) == 2


def test_the_offline_legacy_build_assistant_too() -> None:
    pytest.importorskip("autogen")
    from agentsession.offline.legacy import build_assistant

    with SessionManager(build_assistant, "memory://") as manager:
        assert user_messages_seen(manager.session().send("hello")) == 1


def _bare() -> None: ...
def _optional(name: str = "assistant", tools: Any = None) -> None: ...
def _required(context: Any) -> None: ...
def _required_other_name(c: Any) -> None: ...
def _named_optional(context: Any = None) -> None: ...
def _ctx(ctx: Any = None) -> None: ...
def _annotated(session: SessionContext | None = None) -> None: ...
def _annotated_only(session: SessionContext = None) -> None: ...  # type: ignore[assignment]
def _keyword_only(*, context: Any = None) -> None: ...
def _varargs(*args: Any) -> None: ...
def _context_second(name: str = "assistant", context: Any = None) -> None: ...
def _required_then_optional(context: Any, name: str = "assistant") -> None: ...


@pytest.mark.parametrize(
    ("factory", "takes"),
    [
        (_bare, False),
        (_optional, False),
        (_required, True),
        (_required_other_name, True),
        (_named_optional, True),
        (_ctx, True),
        (_annotated_only, True),
        (_annotated, True),
        (_keyword_only, False),
        (_varargs, False),
        (_context_second, False),  # the context would land in `name`
        (_required_then_optional, True),
        (lambda: None, False),
        (lambda context: None, True),
        (lambda name="x": None, False),
    ],
)  # fmt: skip
def test_who_gets_the_context(factory: Any, takes: bool) -> None:
    assert _factory_takes_context(factory) is takes


def test_the_context_reaches_a_factory_that_asks_for_it(family: str) -> None:
    seen: list[SessionContext] = []
    build = offline_agent_factory(family)

    def factory(context: SessionContext) -> Any:
        seen.append(context)
        return build()

    with SessionManager(factory, "memory://") as manager:
        manager.session("ada").send("hello")
    assert [c.id for c in seen] == ["ada"]
