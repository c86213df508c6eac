"""Timing helpers and the result tables every benchmark part returns."""

from __future__ import annotations

import asyncio
import contextlib
import platform
import statistics
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |"]
        lines.append("|" + "|".join("---" for _ in self.columns) + "|")
        lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in self.rows]
        lines += [""] + [f"- {note}" for note in self.notes]
        return "\n".join(lines).rstrip() + "\n"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def ms(seconds: float) -> float:
    return round(seconds * 1000, 4)


def median_time(fn: Callable[[], Any], *, rounds: int, number: int = 1, warmup: int = 1) -> float:
    """Median seconds per call of ``fn`` over ``rounds`` rounds of ``number`` calls."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples.append((time.perf_counter() - start) / number)
    return statistics.median(samples)


def interleaved_times(
    fns: dict[Any, Callable[[], Any]], *, rounds: int, number: int = 1
) -> dict[Any, float]:
    """Median seconds per call of each of ``fns``, the contenders taking turns round after
    round (each round in a rotated order), so a slow moment on a shared machine falls on all
    of them rather than on whichever was being measured then."""
    for fn in fns.values():
        for _ in range(number):
            fn()
    samples: dict[Any, list[float]] = {key: [] for key in fns}
    for key in _schedule(list(fns), rounds):
        fn = fns[key]
        start = time.perf_counter()
        for _ in range(number):
            fn()
        samples[key].append((time.perf_counter() - start) / number)
    return {key: statistics.median(values) for key, values in samples.items()}


def _schedule(keys: list[Any], rounds: int) -> Iterator[Any]:
    """Every key once a round, each round in a rotated order."""
    for i in range(rounds):
        shift = i % len(keys)
        yield from keys[shift:] + keys[:shift]


async def ainterleaved_times(
    fns: dict[Any, Callable[[], Awaitable[Any]]], *, rounds: int, number: int = 1
) -> dict[Any, float]:
    """``interleaved_times`` for coroutine functions, on the running loop."""
    for fn in fns.values():
        for _ in range(number):
            await fn()
    samples: dict[Any, list[float]] = {key: [] for key in fns}
    for key in _schedule(list(fns), rounds):
        fn = fns[key]
        start = time.perf_counter()
        for _ in range(number):
            await fn()
        samples[key].append((time.perf_counter() - start) / number)
    return {key: statistics.median(values) for key, values in samples.items()}


async def amedian_time(
    fn: Callable[[], Awaitable[Any]], *, rounds: int, number: int = 1, warmup: int = 1
) -> float:
    for _ in range(warmup):
        await fn()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(number):
            await fn()
        samples.append((time.perf_counter() - start) / number)
    return statistics.median(samples)


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(coro)  # type: ignore[arg-type]


def versions(*dists: str) -> dict[str, str]:
    found = {}
    for dist in dists:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[dist] = metadata.version(dist)
    return found


def machine() -> dict[str, Any]:
    import os

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }
