"""The contract one AutoGen API family implements."""

from __future__ import annotations

import importlib
import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from ..errors import FamilyError, UnsupportedVersion
from ..messages import Image, Message
from ..turns import Emit, Turn, ignore
from ._gates import at_least, parse, tested


@dataclass(frozen=True, slots=True)
class FamilyInfo:
    """What is installed of one family."""

    family: str
    module: str
    version: str
    distributions: tuple[str, ...]
    supported: bool
    tested: bool
    problem: str | None = None


class Driver(ABC):
    """Drives one live agent (or team) of one conversation.

    A driver is never shared between conversations nor between concurrent turns: the
    engine guarantees one turn at a time per driver.
    """

    agent: Any

    @abstractmethod
    async def run_turn(
        self,
        text: str,
        sender: str = "user",
        emit: Emit = ignore,
        *,
        images: Sequence[Image] = (),
    ) -> Turn:
        """Send one user message and return the ``Turn``: every message the turn added, in
        order (the user message first, then tool calls and results, the final reply last),
        with the stop reason and usage where the family reports them.

        ``emit`` is called (from any thread) with a ``MessageEvent`` for each of those
        messages as it is finished, in the same order, and with ``TextDelta``s before a
        message while it is being written, where the model client streams. ``images`` go
        with the user's text; a driver whose family cannot take them calls ``refuse_images``.
        A turn that fails raises; the engine then records nothing of it.
        """

    def parts(self) -> Iterable[object]:
        """The objects that belong to this conversation alone (the agent, its model context,
        a team's participants): the engine refuses a factory that hands one of them to two
        conversations."""
        return (self.agent,)

    @abstractmethod
    async def export_history(self) -> list[Message]:
        """The agent's whole conversation as canonical messages (system message excluded)."""

    @abstractmethod
    async def import_history(self, messages: Sequence[Message]) -> None:
        """Load canonical messages into a freshly built agent."""

    async def extend_history(self, messages: Sequence[Message]) -> bool:
        """Bring a live agent up to date: append ``messages``, whole turns that another
        process recorded after this agent's last turn, to what it holds.

        Return False if this driver cannot (the engine then builds a new agent from the
        stored conversation). On an exception the engine drops this driver.
        """
        return False

    async def close(self) -> None:
        """Release what the driver holds (called when a cached agent is evicted)."""


class Family(ABC):
    """One AutoGen API family: how to find it, recognise its agents and drive them."""

    name: ClassVar[str]
    module: ClassVar[str]
    minimum: ClassVar[Version]
    below: ClassVar[Version | None] = None
    tested_range: ClassVar[SpecifierSet]
    install_hint: ClassVar[str]

    def is_importable(self) -> bool:
        return importlib.util.find_spec(self.module) is not None

    def module_version(self) -> str | None:
        """The importable module's own ``__version__`` (never the distribution's)."""
        if not self.is_importable():
            return None
        module = importlib.import_module(self.module)
        version = getattr(module, "__version__", None)
        return str(version) if version is not None else None

    def check_version(self, version: str | None = None) -> Version:
        """The installed version, or ``UnsupportedVersion`` naming the fix."""
        raw = version if version is not None else self.module_version()
        parsed = parse(raw) if raw else None
        if parsed is None:
            raise UnsupportedVersion(
                f"cannot read the version of the installed '{self.module}' module ({raw!r}); "
                f"the install may be broken. Reinstall it: {self.install_hint}"
            )
        too_new = self.below is not None and at_least(parsed, self.below)
        if not at_least(parsed, self.minimum) or too_new:
            bound = f">={self.minimum}" + (f",<{self.below}" if self.below else "")
            raise UnsupportedVersion(
                f"'{self.module}' {parsed} is not supported by agentsession's {self.name} family "
                f"(needs {bound}). Install a supported version: {self.install_hint}"
            )
        return parsed

    def is_tested(self, version: Version) -> bool:
        return tested(version, self.tested_range)

    @abstractmethod
    def owns(self, agent: object) -> bool:
        """True if ``agent`` is an object of this family. Must not import the family."""

    @abstractmethod
    def drive(self, agent: Any) -> Driver:
        """A driver for an agent (or team) built by the user's factory."""


def refuse_images(images: Sequence[Image], driver: Driver) -> None:
    """``FamilyError`` if a turn brings images to a driver that cannot pass them on."""
    if images:
        raise FamilyError(
            f"{type(driver).__name__} cannot take images in a turn yet; send the text alone"
        )
