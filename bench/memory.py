"""Memory with many idle conversations: RSS after N conversations touched once (bounded cache)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile

from ._report import Table

CHILD = r"""
import asyncio, json, resource, sys
from agentsession import AsyncSessionManager
from agentsession.offline import offline_agent_factory

def rss_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

async def main(url, total, cache_size, family):
    marks = {}
    async with AsyncSessionManager(offline_agent_factory(family), url, cache_size=cache_size) as manager:
        await manager.session().send("warm up")
        marks[0] = rss_mb()
        for i in range(1, total + 1):
            await manager.session().send(f"conversation {i}")
            if i % (total // 4) == 0:
                marks[i] = rss_mb()
        cached = len(manager._cache)
    print(json.dumps({"marks": marks, "cached": cached}))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]))
"""


def measure(quick: bool, family: str = "agentchat") -> list[Table]:
    total = 2000 if quick else 10000
    table = Table(
        f"Memory after {total:,} conversations touched once (RSS MB, SQLite store)",
        [
            "cache_size",
            "start",
            *(f"after {total * k // 4:,}" for k in range(1, 5)),
            "live agents cached",
            "MB per 1,000 (2nd half)",
        ],
        notes=[
            f"{family} family, offline model; each conversation gets one turn and is never touched again."
        ],
    )
    for cache_size in (256, 4096):
        with tempfile.TemporaryDirectory(dir=".") as folder:
            out = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    CHILD,
                    f"sqlite:///{folder}/mem.db",
                    str(total),
                    str(cache_size),
                    family,
                ],
                capture_output=True,
                text=True,
                check=True,
            )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        marks = {int(k): v for k, v in result["marks"].items()}
        keys = sorted(marks)
        half = (marks[keys[-1]] - marks[keys[2]]) / ((keys[-1] - keys[2]) / 1000)
        table.rows.append(
            [cache_size, *(round(marks[k], 1) for k in keys), result["cached"], round(half, 2)]
        )
    return [table]
