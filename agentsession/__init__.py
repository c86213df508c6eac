"""agentsession: AutoGen agents that remember, behind any web framework.

from agentsession import SessionManager

manager = SessionManager(build_agent, "sqlite:///agentsession.db")
session = manager.session()            # a new conversation, or manager.session(known_id)
reply = session.send("hello")          # the agent sees every earlier turn
"""

from __future__ import annotations

from .errors import (
    AgentSessionError,
    ClobberedInstall,
    ConfigurationError,
    ConflictError,
    ConversationFull,
    CorruptRecord,
    FamilyError,
    IdempotencyKeyReused,
    InvalidInput,
    InvalidSecretKey,
    LeaseLost,
    LimitExceeded,
    MessageTooLarge,
    NotRepresentable,
    OutcomeUnknown,
    OwnerMismatch,
    SessionBusy,
    SessionNotFound,
    SharedAgent,
    StoreError,
    StoreUnavailable,
    StreamInterrupted,
    TeamMismatch,
    UnknownSchemaVersion,
    UnserializableState,
    UnsupportedAgent,
    UnsupportedVersion,
)
from .families._team import rename_speakers
from .manager import (
    ANY_OWNER,
    MAX_SESSION_ID_LENGTH,
    OWNER_KEY,
    AsyncSession,
    AsyncSessionManager,
    Session,
    SessionContext,
    SessionManager,
    check_session_id,
    new_session_id,
)
from .messages import Image, Message, ToolCall, close_unanswered_tool_calls, unanswered_tool_calls
from .observe import Observer, Stats, StoreCall, TurnRecord
from .stores import SessionInfo, Store, open_store
from .turns import MessageEvent, TextDelta, Turn, TurnEnd, TurnEvent, TurnStart, Usage

__version__ = "0.1.0"

__all__ = [
    "ANY_OWNER",
    "MAX_SESSION_ID_LENGTH",
    "OWNER_KEY",
    "AgentSessionError",
    "AsyncSession",
    "AsyncSessionManager",
    "ClobberedInstall",
    "ConfigurationError",
    "ConflictError",
    "ConversationFull",
    "CorruptRecord",
    "FamilyError",
    "IdempotencyKeyReused",
    "Image",
    "InvalidInput",
    "InvalidSecretKey",
    "LeaseLost",
    "LimitExceeded",
    "Message",
    "MessageEvent",
    "MessageTooLarge",
    "Observer",
    "OutcomeUnknown",
    "OwnerMismatch",
    "NotRepresentable",
    "Session",
    "SessionBusy",
    "Stats",
    "StoreCall",
    "SessionContext",
    "SessionInfo",
    "SessionManager",
    "SessionNotFound",
    "SharedAgent",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "StreamInterrupted",
    "TeamMismatch",
    "TextDelta",
    "ToolCall",
    "Turn",
    "TurnEnd",
    "TurnRecord",
    "TurnEvent",
    "TurnStart",
    "UnknownSchemaVersion",
    "UnserializableState",
    "UnsupportedAgent",
    "UnsupportedVersion",
    "Usage",
    "check_session_id",
    "close_unanswered_tool_calls",
    "new_session_id",
    "open_store",
    "rename_speakers",
    "unanswered_tool_calls",
]
