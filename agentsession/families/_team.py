"""What every team driver shares: the team record a turn carries, and participant checks.

A team conversation is stored as its canonical log: every message with its speaker's name.
What a team's manager keeps beyond the log (the next speaker index, the current speaker, a
graph's ready queue) is small and bounded; a turn carries it in the ``metadata`` of its last
message under ``TEAM_KEY``, and a rebuilt team takes the newest one. No turn rewrites the
whole team state.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec

from ..errors import TeamMismatch
from ..messages import Message

logger = logging.getLogger("agentsession")

TEAM_KEY = "agentsession.team"
TEAM_RECORD_VERSION = 1
_RENAME_ATTRIBUTE = "_agentsession_rename"


def team_record(kind: str, state: Mapping[str, Any]) -> dict[str, Any]:
    """The record a team turn stores: its own schema version, the team type, the manager's
    bounded state (JSON values only)."""
    return {"v": TEAM_RECORD_VERSION, "team": kind, "state": _jsonable(dict(state))}


def with_record(messages: Sequence[Message], record: Mapping[str, Any]) -> tuple[Message, ...]:
    """``messages`` with ``record`` in the last one's metadata."""
    if not messages:
        return tuple(messages)
    last = messages[-1]
    tagged = msgspec.structs.replace(last, metadata={**last.metadata, TEAM_KEY: dict(record)})
    return (*messages[:-1], tagged)


def latest_record(messages: Sequence[Message], kind: str) -> dict[str, Any] | None:
    """The newest team record in ``messages`` written by a team of type ``kind``.

    A record of another team type (the conversation moved from one team type or family to
    another) or of an unknown schema version is ignored: the driver derives what it needs from
    the log instead.
    """
    for message in reversed(messages):
        record = message.metadata.get(TEAM_KEY)
        if record is None:
            continue
        if not isinstance(record, Mapping) or record.get("v") != TEAM_RECORD_VERSION:
            logger.warning("ignoring a team record of unknown form: %r", record)
            return None
        if record.get("team") != kind or not isinstance(record.get("state"), Mapping):
            return None
        return dict(record["state"])
    return None


def rename_speakers(team: Any, mapping: Mapping[str, str]) -> Any:
    """Return ``team`` marked so that a stored conversation's speakers are renamed on load:
    ``mapping`` maps a stored name to a participant of this team. Use it in the factory when a
    team's participants were renamed, or to continue a conversation with a team whose members
    have other names::

        def factory():
            return agentsession.rename_speakers(build_team(), {"assistant": "writer"})
    """
    target = team[-1] if isinstance(team, tuple) else team
    setattr(target, _RENAME_ATTRIBUTE, dict(mapping))
    return team


def renames(team: Any) -> bool:
    """True if ``rename_speakers`` gave the team a mapping."""
    return bool(getattr(team, _RENAME_ATTRIBUTE, None))


def renamed(team: Any, messages: Sequence[Message]) -> list[Message]:
    """``messages`` with the speakers ``rename_speakers`` mapped, if the team has a mapping."""
    mapping: Mapping[str, str] = getattr(team, _RENAME_ATTRIBUTE, None) or {}
    if not mapping:
        return list(messages)
    return [
        msgspec.structs.replace(m, name=mapping[m.name])
        if m.name is not None and m.name in mapping and m.role != "tool"
        else m
        for m in messages
    ]


def check_speakers(
    messages: Iterable[Message],
    participants: Sequence[str],
    *,
    speakers_of_user: Iterable[str] = (),
) -> None:
    """``TeamMismatch`` if a stored message was spoken by an agent the team lacks.

    The stored user messages may carry any name (the human's); every assistant message must
    come from a participant.
    """
    known = set(participants) | set(speakers_of_user)
    missing = sorted(
        {str(m.name) for m in messages if m.role == "assistant" and m.name not in known}
    )
    if missing:
        raise TeamMismatch(missing, list(participants))


def _jsonable(value: Any) -> Any:
    # the manager states hold Counters, deques and (0.6.x) datetimes: store plain JSON
    return json.loads(json.dumps(value, default=_plain))


def _plain(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)) or hasattr(value, "__iter__"):
        return list(value)
    return str(value)
