"""The ag2 family: ``import ag2`` (AG2 v1, the ``ag2`` distribution 1.x).

Not the ``ag2`` distribution 0.x: that ships ``import autogen``, the legacy family. An AG2 v1
``Agent`` keeps no conversation; a ``MemoryStream`` does, as an event log in a ``Storage``.
``agent`` drives one ``Agent`` on a stream it owns, ``conversion`` maps stream events to
canonical messages and back. Nothing here imports AG2 until a driver is built. Apps that call
their agent themselves use ``agentsession.integrations.ag2`` (an ``ag2.history.Storage`` on
agentsession's stores).
"""

from __future__ import annotations

from typing import Any

from ...errors import UnsupportedAgent
from .._gates import AG2_BELOW, AG2_MINIMUM, AG2_TESTED
from ..base import Family
from .agent import Ag2Driver
from .conversion import to_canonical, to_native

_MODULE = "ag2"


class Ag2Family(Family):
    """AG2 v1 (``import ag2``, ag2 >= 1.0). The driver runs one ``ag2.Agent``."""

    name = "ag2"
    module = _MODULE
    minimum = AG2_MINIMUM
    below = AG2_BELOW
    tested_range = AG2_TESTED
    install_hint = (
        "pip install 'ag2>=1.0,<2'  (ag2 0.x is `import autogen`, agentsession's legacy family)"
    )

    def owns(self, agent: object) -> bool:
        return any(
            cls.__name__ == "Agent" and cls.__module__.partition(".")[0] == _MODULE
            for cls in type(agent).__mro__
        )

    def drive(self, agent: Any) -> Ag2Driver:
        version = self.check_version()
        from ag2 import Agent

        if not isinstance(agent, Agent):  # pragma: no cover - owns() checked the ancestry
            raise UnsupportedAgent(f"{type(agent).__qualname__} is not an ag2.Agent")
        return Ag2Driver(agent, version)


__all__ = ["Ag2Driver", "Ag2Family", "to_canonical", "to_native"]
