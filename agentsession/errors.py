"""Every error agentsession raises, each with a message that says what to do."""

from __future__ import annotations


class AgentSessionError(Exception):
    """Base class of all agentsession errors."""


class ConfigurationError(AgentSessionError):
    """The library was configured in a way that cannot work."""


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


class StoreError(AgentSessionError):
    """A store failed."""


class StoreUnavailable(StoreError):
    """The store cannot be reached. Web adapters answer 503; retry later."""


class CorruptRecord(StoreError):
    """A stored record cannot be decoded. It is left in place for inspection."""

    def __init__(self, session_id: str, detail: str) -> None:
        self.session_id = session_id
        self.detail = detail
        super().__init__(
            f"session {session_id!r} holds a record that cannot be read ({detail}). "
            "The record was left untouched: inspect it with "
            f"'agentsession show {session_id}', or remove it with 'agentsession rm {session_id}'."
        )


class UnknownSchemaVersion(CorruptRecord):
    """A record was written by a newer agentsession than this one."""


class ConflictError(StoreError):
    """Another writer changed the conversation since it was read; the turn was not recorded."""


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


class DecryptionError(StoreError):
    """Stored content could not be decrypted with any configured key."""
