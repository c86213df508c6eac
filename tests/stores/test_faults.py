"""Across processes: concurrency, kill -9 mid-turn, first use. Server outages: test_store_servers.py."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest

from agentsession import SessionManager
from agentsession.offline import offline_agent_factory, user_messages_seen

pytestmark = pytest.mark.slow

WORKER = textwrap.dedent(
    """
    import sys, threading
    from agentsession import SessionManager
    from agentsession.offline import offline_agent_factory
    url, session_id, threads, turns = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    manager = SessionManager(offline_agent_factory(), url, lock_timeout=120)
    errors = []
    def work(t):
        for i in range(turns):
            try:
                manager.send(session_id, f"pid-turn {t}-{i}")
            except Exception as exc:
                errors.append(repr(exc))
    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    [p.start() for p in pool]; [p.join() for p in pool]
    manager.close()
    print("errors", errors)
    sys.exit(1 if errors else 0)
    """
)


def test_fifty_turns_from_two_processes(durable_store_url: str) -> None:
    with SessionManager(offline_agent_factory(), durable_store_url) as manager:
        session = manager.session()
        session.send("opening turn")
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, durable_store_url, session.id, "5", "5"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [w.communicate(timeout=300)[0] for w in workers]
        assert [w.returncode for w in workers] == [0, 0], outputs
        history = session.history()
    assert len(history) == 2 + 100
    for user, reply in zip(history[::2], history[1::2], strict=True):
        assert user.role == "user" and reply.role == "assistant"
        assert repr(user.content) in (reply.content or "")
    # every turn's model saw every earlier turn: serialised, and no stale cached agent
    assert [user_messages_seen(r.content or "") for r in history[1::2]] == list(range(1, 52))


SLOW_TURN = textwrap.dedent(
    """
    import sys, time
    from agentsession import SessionManager
    from agentsession.offline.agentchat import build_agent
    def wait(seconds: float) -> str:
        "Waits."
        print("in-model", flush=True)
        time.sleep(seconds)
        return "waited"
    manager = SessionManager(lambda: build_agent(tools=[wait]), sys.argv[1], lease_ttl=2)
    print("ready", flush=True)
    manager.send(sys.argv[2], '/tool wait {"seconds": 60}')
    """
)

BUSY_WRITER = textwrap.dedent(
    """
    import sys
    from agentsession import SessionManager
    from agentsession.offline import offline_agent_factory
    manager = SessionManager(offline_agent_factory(), sys.argv[1], lease_ttl=2)
    print("ready", flush=True)
    for i in range(100000):
        manager.send(sys.argv[2], f"turn {i}")
    """
)


def _wait_for(process: subprocess.Popen[str], line: str) -> None:
    assert process.stdout is not None
    for got in process.stdout:
        if got.strip() == line:
            return
    raise AssertionError(f"worker exited before printing {line!r}")


def _assert_whole(history: list[object]) -> None:
    assert len(history) % 2 == 0, "a half turn was recorded"
    for user, reply in zip(history[::2], history[1::2], strict=True):
        assert user.role == "user" and reply.role == "assistant"  # type: ignore[attr-defined]


def test_kill_9_inside_the_model_call_leaves_no_half_turn(durable_store_url: str) -> None:
    pytest.importorskip("autogen_agentchat")
    with SessionManager(offline_agent_factory(), durable_store_url, lock_timeout=30) as manager:
        session = manager.session()
        session.send("before the crash")
        worker = subprocess.Popen(
            [sys.executable, "-c", SLOW_TURN, durable_store_url, session.id],
            stdout=subprocess.PIPE,
            text=True,
        )
        _wait_for(worker, "in-model")  # the worker holds the lease, inside its turn
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        history = session.history()
        assert len(history) == 2  # nothing of the killed turn
        # its lease (2 s) is recovered and the conversation goes on
        reply = session.send("after the crash")
        assert user_messages_seen(reply) == 2


def test_kill_9_at_random_points_of_a_write_loop(durable_store_url: str) -> None:
    with SessionManager(offline_agent_factory(), durable_store_url, lock_timeout=30) as manager:
        session = manager.session()
        session.send("start")
        for delay in (0.05, 0.13, 0.21, 0.37, 0.52):
            worker = subprocess.Popen(
                [sys.executable, "-c", BUSY_WRITER, durable_store_url, session.id],
                stdout=subprocess.PIPE,
                text=True,
            )
            _wait_for(worker, "ready")
            time.sleep(delay)
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)
            _assert_whole(session.history())
        before = len(session.history())
        reply = session.send("still usable")
        assert user_messages_seen(reply) == before // 2 + 1


FIRST_USE = textwrap.dedent(
    """
    import asyncio, sys, uuid
    from agentsession.stores import open_store
    async def main():
        store = open_store(sys.argv[1])
        # many first uses at once in one process too: threads race on table creation
        await asyncio.gather(*(store.create(uuid.uuid4().hex, {}) for _ in range(8)))
        await store.close()
    asyncio.run(main())
    """
)


def test_first_use_by_several_processes_at_once(durable_store_url: str) -> None:
    """Workers of a fresh deployment all create the schema on their first request."""
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", FIRST_USE, durable_store_url], stderr=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    errors = [w.communicate(timeout=120)[1] for w in workers]
    assert [w.returncode for w in workers] == [0, 0, 0, 0], errors
    with SessionManager(offline_agent_factory(), durable_store_url) as manager:
        assert len(manager.list(limit=100)) == 32
