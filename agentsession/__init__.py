"""agentsession: AutoGen agents that remember, behind any web framework.

from agentsession import SessionManager

manager = SessionManager(build_agent, "sqlite:///agents.db")
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
    InvalidInput,
    LimitExceeded,
    MessageTooLarge,
    NotRepresentable,
    SessionBusy,
    SessionNotFound,
    StoreError,
    StoreUnavailable,
    UnknownSchemaVersion,
    UnserializableState,
    UnsupportedAgent,
    UnsupportedVersion,
)
from .manager import (
    MAX_SESSION_ID_LENGTH,
    AsyncSession,
    AsyncSessionManager,
    Session,
    SessionContext,
    SessionManager,
    check_session_id,
    new_session_id,
)
from .messages import Message, ToolCall, close_unanswered_tool_calls, unanswered_tool_calls
from .stores import SessionInfo, Store, open_store

__version__ = "0.1.0"

__all__ = [
    "MAX_SESSION_ID_LENGTH",
    "AgentSessionError",
    "AsyncSession",
    "AsyncSessionManager",
    "ClobberedInstall",
    "ConfigurationError",
    "ConflictError",
    "ConversationFull",
    "CorruptRecord",
    "FamilyError",
    "InvalidInput",
    "LimitExceeded",
    "Message",
    "MessageTooLarge",
    "NotRepresentable",
    "Session",
    "SessionBusy",
    "SessionContext",
    "SessionInfo",
    "SessionManager",
    "SessionNotFound",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "ToolCall",
    "UnknownSchemaVersion",
    "UnserializableState",
    "UnsupportedAgent",
    "UnsupportedVersion",
    "check_session_id",
    "close_unanswered_tool_calls",
    "new_session_id",
    "open_store",
    "unanswered_tool_calls",
]
