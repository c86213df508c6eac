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
    SessionBusy,
    SessionNotFound,
    StoreError,
    StoreUnavailable,
    TeamMismatch,
    UnknownSchemaVersion,
    UnsupportedAgent,
    UnsupportedVersion,
)
from .families._team import rename_speakers
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
from .messages import Message, ToolCall
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
    "Session",
    "SessionBusy",
    "SessionContext",
    "SessionInfo",
    "SessionManager",
    "SessionNotFound",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "TeamMismatch",
    "ToolCall",
    "UnknownSchemaVersion",
    "UnsupportedAgent",
    "UnsupportedVersion",
    "check_session_id",
    "new_session_id",
    "open_store",
    "rename_speakers",
]
