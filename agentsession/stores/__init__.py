"""Stores, chosen by URL: ``memory://``, ``sqlite:///path.db``, ``redis://…``, ``postgresql://…``, ``mysql://…``."""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigurationError, MissingDependency
from .base import (
    Conversation,
    MessagePage,
    RecordCodec,
    SessionInfo,
    Store,
    StoredTurn,
    TurnKey,
    redact_url,
)

# scheme -> "module:Class"; imported lazily so each backend's extra stays optional
_REGISTRY: dict[str, str] = {
    "memory": "agentsession.stores.memory:MemoryStore",
    "sqlite": "agentsession.stores.sqlite:SQLiteStore",
    "redis": "agentsession.stores.redis:RedisStore",
    "rediss": "agentsession.stores.redis:RedisStore",
    "unix": "agentsession.stores.redis:RedisStore",
    "postgresql": "agentsession.stores.sql:SQLStore",
    "postgres": "agentsession.stores.sql:SQLStore",
    "mysql": "agentsession.stores.sql:SQLStore",
    "mariadb": "agentsession.stores.sql:SQLStore",
}

# the extra that installs what a scheme's store needs, where one module serves several
_EXTRAS = {
    "mysql": "mysql",
    "mariadb": "mysql",
    "postgresql": "postgresql",
    "postgres": "postgresql",
}


def register_store(scheme: str, target: str) -> None:
    """Make ``open_store`` build ``target`` ("package.module:Class") for URLs of ``scheme``."""
    _REGISTRY[scheme] = target


def store_class(url: str) -> type[Store]:
    scheme = urlsplit(url).scheme.split("+", 1)[0]
    target = _REGISTRY.get(scheme)
    if not scheme:
        raise ConfigurationError(
            f"{url!r} is not a store URL: name a scheme, e.g. sqlite:///{url or 'agentsession.db'}"
        )
    if target is None:
        known = ", ".join(sorted(f"{s}://" for s in _REGISTRY))
        raise ConfigurationError(
            f"no store for URL scheme {scheme!r} in {redact_url(url)}; known: {known}"
        )
    module_name, _, class_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except MissingDependency as exc:  # one module serves several schemes: name this one's extra
        extra = _EXTRAS.get(scheme, exc.extra)
        if extra == exc.extra:
            raise
        raise MissingDependency(exc.package, extra, f"The {scheme}:// store") from exc
    cls: type[Store] = getattr(module, class_name)
    return cls


def open_store(url: str, **options: Any) -> Store:
    """Build the store for ``url``; ``options`` go to its constructor (``ttl``, ``codec``, …)."""
    return store_class(url).from_url(url, **options)


__all__ = [
    "Conversation",
    "MessagePage",
    "RecordCodec",
    "SessionInfo",
    "Store",
    "StoredTurn",
    "TurnKey",
    "open_store",
    "redact_url",
    "register_store",
]
