"""Version-specific side effects of the legacy API: console output and the reply cache."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from packaging.version import Version

from .._gates import (
    LEGACY_CACHE_OFF_BY_DEFAULT,
    LEGACY_CACHE_SEED_IGNORED,
    LEGACY_IOSTREAM,
    at_least,
)

logger = logging.getLogger("agentsession")

_DEFAULT_CACHE_SEED = 41  # what releases before 0.8.7 use when llm_config names no cache_seed


class _SilentStream:
    """An AutoGen IOStream that prints nothing and never reads stdin (a server has neither).

    An empty answer to a human-input prompt means "no input": AutoGen then auto-replies.
    """

    def print(self, *objects: Any, sep: str = " ", end: str = "\n", flush: bool = False) -> None:
        return None

    def input(self, prompt: str = "", *, password: bool = False) -> str:
        return ""

    def send(self, message: Any) -> None:  # ag2's structured events
        return None


def _quiet(version: Version) -> AbstractContextManager[None]:
    """Silence AutoGen's console output for the current thread only.

    AG2 prints (tool executions, events) even with ``silent=True``. ``IOStream.set_default``
    sets a ContextVar, unlike ``contextlib.redirect_stdout``, which swaps the process-wide
    ``sys.stdout`` under every other thread.
    """
    if at_least(version, LEGACY_IOSTREAM):
        from autogen.io import IOStream

        silenced: AbstractContextManager[None] = IOStream.set_default(_SilentStream())
        return silenced
    # before IOStream AutoGen calls print(); nothing silences that per call
    return nullcontext()


def reply_cache_problem(llm_config: Mapping[str, Any] | None, version: Version) -> str | None:
    """Why this ``llm_config`` makes AutoGen cache model replies, or None if it does not.

    A cached reply is replayed for an identical prompt, and pyautogen 0.2 writes the cache to
    ``./.cache/<seed>``: wrong for a live conversation service.
    """
    if llm_config is None:
        return None
    if at_least(version, LEGACY_CACHE_SEED_IGNORED) and not at_least(
        version, LEGACY_CACHE_OFF_BY_DEFAULT
    ):
        return (
            f"caches model replies on disk (./.cache) with autogen {version} whatever its "
            "cache_seed says (ag2ai/ag2#1640); upgrade to ag2>=0.8.7"
        )
    default = None if at_least(version, LEGACY_CACHE_OFF_BY_DEFAULT) else _DEFAULT_CACHE_SEED
    top = llm_config.get("cache_seed", default)
    # each config_list entry is merged over the top level when AutoGen calls the model
    entries = list(llm_config.get("config_list") or ()) or [{}]
    seeds = {entry.get("cache_seed", top) for entry in entries} - {None}
    if not seeds:
        return None
    return (
        f"caches model replies (cache_seed={min(seeds, key=repr)!r}; pyautogen 0.2 writes "
        "them to ./.cache) and replays them for identical prompts; set llm_config "
        "cache_seed=None"
    )


def _llm_config(agent: Any) -> Mapping[str, Any] | None:
    """The agent's llm_config as a dict: ag2 >= 0.8.2 keeps an ``LLMConfig`` object."""
    config = getattr(agent, "llm_config", None)
    if isinstance(config, Mapping):
        return config
    dump = getattr(config, "model_dump", None)
    if callable(dump):
        dumped = dump()
        return dumped if isinstance(dumped, Mapping) else None
    return None


def _offers_tools(agent: Any) -> bool:
    config = _llm_config(agent)
    return bool(config and (config.get("tools") or config.get("functions")))


_warned: set[tuple[str, str]] = set()


def _warn_once(agent: Any, problem: str) -> None:
    # drive() runs for every conversation the engine rebuilds: say it once per agent name
    key = (str(getattr(agent, "name", "?")), problem)
    if key not in _warned:
        _warned.add(key)
        logger.warning("agent %r %s", key[0], problem)
