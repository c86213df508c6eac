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
    LimitExceeded,
    MessageTooLarge,
    SessionBusy,
    SessionNotFound,
    StoreError,
    StoreUnavailable,
    UnknownSchemaVersion,
    UnsupportedAgent,
    UnsupportedVersion,
)
from .manager import (
    AsyncSession,
    AsyncSessionManager,
    Session,
    SessionContext,
    SessionManager,
    new_session_id,
)
from .messages import Message, ToolCall
from .stores import SessionInfo, Store, open_store

__version__ = "0.1.0"

__all__ = [
    "AgentSessionError",
    "AsyncSession",
    "AsyncSessionManager",
    "ClobberedInstall",
    "ConfigurationError",
    "ConflictError",
    "ConversationFull",
    "CorruptRecord",
    "FamilyError",
    "LimitExceeded",
    "Message",
    "MessageTooLarge",
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
    "UnsupportedAgent",
    "UnsupportedVersion",
    "new_session_id",
    "open_store",
]
