"""Which conversation each live agent object belongs to, so one object never serves two.

A factory that returns the same agent (or model context, or team) for every conversation
leaks one user's messages into another's replies; the engine asks each driver for the objects
that must be its own (``Driver.parts()``) and refuses one already claimed by another
conversation. Entries go with their objects (weak references).
"""

from __future__ import annotations

import weakref
from functools import partial

from .errors import SharedAgent


class Claims:
    def __init__(self) -> None:
        self._owners: dict[int, tuple[weakref.ref[object], str]] = {}

    def claim(self, session_id: str, parts: tuple[object, ...] | list[object]) -> None:
        """Record ``parts`` as ``session_id``'s, or raise ``SharedAgent`` (recording nothing)."""
        for part in parts:
            entry = self._owners.get(id(part))
            if entry is not None and entry[0]() is part and entry[1] != session_id:
                raise SharedAgent(type(part).__qualname__, entry[1])
        for part in parts:
            try:
                ref = weakref.ref(part, partial(self._forget, id(part)))
            except TypeError:  # not weakly referenceable (rare): cannot be tracked
                continue
            self._owners[id(part)] = (ref, session_id)

    def _forget(self, key: int, dead: weakref.ref[object]) -> None:
        # the id may already belong to a newer object's entry: drop only the dead one's
        entry = self._owners.get(key)
        if entry is not None and entry[0] is dead:
            del self._owners[key]

    def __len__(self) -> int:
        return len(self._owners)
