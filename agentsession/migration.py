"""Checking stored conversations against a target family: what ``agentsession migrate --to``
reports before an app moves to another AutoGen generation.

Conversations need no conversion to move between families: every family loads the same
canonical messages. What a target family cannot hold is reported per conversation (see
``agentsession.families._representable``); nothing is changed unless ``repair`` is asked for,
and then only by appending: a tool call left unanswered at the end of a conversation gets its
synthetic error result stored, under the conversation's turn lease.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from .errors import AgentSessionError, FamilyError
from .families import _FAMILIES
from .families._representable import Finding, findings
from .messages import close_unanswered_tool_calls
from .stores import Store


@dataclass(frozen=True, slots=True)
class ConversationReport:
    """What one stored conversation would meet under the target family."""

    session_id: str
    findings: tuple[Finding, ...] = ()
    unreadable: str | None = None
    repaired: int = 0
    """Synthetic results appended by ``repair``."""

    @property
    def blocked(self) -> bool:
        """True if the conversation cannot be loaded into the target family as it is."""
        return self.unreadable is not None or any(f.kind == "error" for f in self.findings)


async def check(
    store: Store, family: str, *, repair: bool = False, page: int = 500
) -> AsyncIterator[ConversationReport]:
    """Each stored conversation's report for ``family``, most recently updated first."""
    if family not in _FAMILIES:
        raise FamilyError(f"unknown family {family!r}; known: {', '.join(_FAMILIES)}")
    offset = 0
    while listing := await store.list(limit=page, offset=offset):
        offset += len(listing)
        for info in listing:
            try:
                conversation = await store.load(info.session_id)
            except AgentSessionError as exc:
                yield ConversationReport(info.session_id, unreadable=str(exc))
                continue
            if conversation is None:  # removed or expired since the listing
                continue
            found = findings(conversation.messages, family)
            repaired = 0
            if repair and any(f.kind == "repair" for f in found):
                repaired = await _repair_tail(store, info.session_id)
                if repaired:
                    reloaded = await store.load(info.session_id)
                    found = findings(reloaded.messages if reloaded else [], family)
            yield ConversationReport(info.session_id, tuple(found), repaired=repaired)


async def _repair_tail(store: Store, session_id: str) -> int:
    """Append the synthetic results of unanswered tool calls at the conversation's end;
    calls in the middle of the history are repaired on every load instead (appending cannot
    put a result where it belongs)."""
    from .integrations._turns import StoreTurns

    turns = StoreTurns(store)
    lease = await turns.begin(session_id)
    messages = lease.conversation.messages if lease.conversation is not None else []
    repaired = close_unanswered_tool_calls(messages)
    if repaired[: len(messages)] != messages or len(repaired) == len(messages):
        await turns.release(lease)
        return 0
    await turns.finish(lease, repaired[len(messages) :])
    return len(repaired) - len(messages)


__all__ = ["ConversationReport", "check"]
