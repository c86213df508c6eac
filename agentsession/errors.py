"""Every error agentsession raises, each with a message that says what to do."""

from __future__ import annotations


class AgentSessionError(Exception):
    """Base class of all agentsession errors."""


class ConfigurationError(AgentSessionError):
    """The library was configured in a way that cannot work."""


class InvalidSecretKey(ConfigurationError, ValueError):
    """The secret key that signs conversation ids is missing or too short to be safe."""


class MissingDependency(ConfigurationError):
    """An optional dependency is not installed."""

    def __init__(self, package: str, extra: str, purpose: str) -> None:
        self.package = package
        self.extra = extra
        super().__init__(
            f"{purpose} needs the '{package}' package. "
            f"Install it with: pip install 'agentsession-middleware[{extra}]'"
        )


class FamilyError(AgentSessionError):
    """The installed AutoGen packages or the agent object cannot be driven."""


class UnsupportedAgent(FamilyError):
    """The factory returned an object that belongs to no supported AutoGen family."""


class UnsupportedVersion(FamilyError):
    """The installed AutoGen version is outside the supported range."""


class TeamMismatch(FamilyError):
    """The stored conversation names speakers the team built by the factory does not have."""

    def __init__(self, missing: list[str], participants: list[str]) -> None:
        self.missing = missing
        self.participants = participants
        super().__init__(
            f"the stored conversation has messages from {', '.join(map(repr, missing))}, "
            f"but the team the factory built has only {', '.join(map(repr, participants))}. "
            "Build the team with the same participant names, or map the old names onto the new "
            "ones: return agentsession.rename_speakers(team, {'old name': 'new name'}) from the "
            "factory"
        )


class NotRepresentable(FamilyError):
    """A stored conversation holds something the agent's family cannot express; nothing was
    changed. ``agentsession migrate --to FAMILY`` lists every such conversation."""

    def __init__(self, family: str, problems: list[str]) -> None:
        self.family = family
        self.problems = problems
        super().__init__(
            f"the stored conversation cannot be loaded into the {family} family: "
            + "; ".join(problems)
            + ". Nothing was changed; run 'agentsession migrate --to "
            + family
            + "' to list every conversation affected."
        )


class ClobberedInstall(FamilyError):
    """Two distributions wrote into the same ``autogen`` package folder."""


class SharedAgent(FamilyError):
    """The factory returned an object that already belongs to another conversation.

    One agent (or team, or model context) serving two conversations leaks one user's messages
    into the other's replies: the factory must build a new one on every call.
    """

    def __init__(self, kind: str, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(
            f"the agent factory returned a {kind} that is already the live agent of another "
            f"conversation ({session_id[:8]}…). One object serving two conversations leaks one "
            "user's messages into the other's replies: build a new agent (and a new model "
            "context, team or group chat) inside the factory on every call, not once at module "
            "level."
        )


class StoreError(AgentSessionError):
    """A store failed."""


class StoreUnavailable(StoreError):
    """The store cannot be reached. Web adapters answer 503; retry later."""


class OutcomeUnknown(StoreUnavailable):
    """The store stopped answering after a write was committed or sent: it may have landed.

    Web adapters answer 503. A retry with the same idempotency key is safe.
    """


class StoreNotFound(StoreError):
    """The store was opened with ``create_schema=False`` and holds no agentsession data yet
    (no database file, or no agentsession tables under that prefix)."""


class CorruptRecord(StoreError):
    """A stored record cannot be decoded. It is left in place for inspection."""

    def __init__(self, session_id: str, detail: str) -> None:
        self.session_id = session_id
        self.detail = detail
        super().__init__(
            f"session {session_id!r} holds a record that cannot be read ({detail}). "
            "The record was left untouched: 'agentsession migrate' lists every unreadable "
            f"conversation and 'agentsession rm {session_id}' removes this one (both with the "
            "store's --store URL)."
        )


class UnknownSchemaVersion(CorruptRecord):
    """A record was written by a newer agentsession than this one."""


class ConflictError(StoreError):
    """Another writer changed the conversation since it was read; the turn was not recorded."""


class LeaseLost(ConflictError):
    """Another worker took over the conversation's turn lease; this turn was not recorded.

    A turn renews its lease while it runs; this happens when it could not (the process was
    frozen, or the store unreachable, for longer than ``lease_ttl``)."""


class SessionBusy(AgentSessionError):
    """Another turn on the same conversation still holds its lock after the timeout."""

    def __init__(self, session_id: str, timeout: float) -> None:
        self.session_id = session_id
        self.timeout = timeout
        super().__init__(
            f"session {session_id!r} is busy with another turn (waited {timeout:g}s); retry later"
        )


class InvalidInput(AgentSessionError, ValueError):
    """A session id or a message that no store can hold: refused before anything is written."""


class IdempotencyKeyReused(InvalidInput):
    """An idempotency key already recorded a turn with another message."""


class OwnerMismatch(AgentSessionError):
    """The conversation is bound to another user; nothing was read or written."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(f"session {session_id[:8]}… belongs to another user")


class UnserializableState(InvalidInput):
    """Framework state that is not JSON (agentsession never pickles): nothing was written."""


class LimitExceeded(AgentSessionError):
    """A message or a conversation is over its configured size limit."""


class MessageTooLarge(LimitExceeded):
    """A message is longer than ``max_message_bytes``."""


class ConversationFull(LimitExceeded):
    """A conversation already holds ``max_messages`` messages."""


class SessionNotFound(AgentSessionError):
    """No conversation is stored under this id."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(f"no session {session_id!r} in the store")


class StreamInterrupted(AgentSessionError):
    """The streamed turn a reader follows failed, was cancelled, or its worker died (nothing
    of it was recorded), or there is no journal to follow."""

    def __init__(self, session_id: str, reason: str, code: str = "interrupted") -> None:
        self.session_id = session_id
        self.code = code
        self.reason = reason
        super().__init__(f"the streamed turn of session {session_id[:8]}… {reason}")


class DecryptionError(StoreError):
    """Stored content could not be decrypted with any configured key."""
