"""Stores built around a client the application already has: ``RedisStore(client=...)``,
``SQLStore(engine=...)``.

The contract suite runs against them (its ``open_store`` builds the store from a client made
here), and ``close()`` leaves the client open: whoever made it closes it.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import test_contract
from conftest import drop_store, make_store_url

from agentsession import ConfigurationError, SessionManager
from agentsession.offline import installed_family, offline_agent_factory, user_messages_seen
from agentsession.stores import Store
from agentsession.stores.base import take_url_options

KINDS = ["redis", "postgresql", "mariadb"]
# every contract test that needs nothing but the store's URL
CONTRACT = [
    name
    for name, test in vars(test_contract).items()
    if name.startswith("test_") and list(inspect.signature(test).parameters) == ["store_url"]
]


class Clients:
    """Builds stores from clients made here, as an application would, and keeps the clients.

    Each store's ``close()`` is followed by what the application does at its own shutdown: the
    client must still work (the store left it open), then the application closes it.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.made: list[Any] = []
        self.checked = 0

    def store(self, url: str, reuse: Any = None, **options: Any) -> Store:
        """The store for ``url``, around a new client (or the client ``reuse``, kept open)."""
        if self.kind == "redis":
            import redis.asyncio as aioredis

            from agentsession.stores.redis import RedisStore

            rest, own = take_url_options(url, ("prefix", "ttl"))
            client = reuse or aioredis.Redis.from_url(rest)
            return self._checked(RedisStore, reuse, client=client, **{**own, **options})
        import sqlalchemy as sa

        from agentsession.stores.sql import SQLStore

        rest, own = take_url_options(url, ("table_prefix", "ttl"))
        driver = "postgresql+psycopg" if self.kind == "postgresql" else "mysql+pymysql"
        engine = reuse or sa.create_engine(driver + rest[rest.index(":") :])
        return self._checked(SQLStore, reuse, engine=engine, **{**own, **options})

    def _checked(self, cls: type[Any], reuse: Any, **options: Any) -> Store:
        clients = self

        class AppOwned(cls):  # type: ignore[misc, valid-type]
            async def close(self) -> None:
                if clients.kind == "redis":  # aclose() would disconnect the pooled connections
                    pooled = list(self.client.connection_pool._available_connections)
                    await super().close()
                    assert pooled and all(conn.is_connected for conn in pooled)
                else:  # dispose() would replace the engine's pool
                    pool = self.engine.pool
                    await super().close()
                    assert self.engine.pool is pool and pool.checkedin() > 0
                if reuse is not None:
                    return  # the caller goes on using it
                await clients.still_open(self.client if clients.kind == "redis" else self.engine)
                clients.checked += 1

        store: Store = AppOwned(**options)
        self.made += [] if reuse else [getattr(store, "client", None) or store.engine]  # type: ignore[attr-defined]
        return store

    async def still_open(self, client: Any) -> None:
        if self.kind == "redis":
            assert await client.ping()
            await client.aclose()
        else:

            def query() -> None:
                with client.connect() as conn:
                    assert conn.exec_driver_sql("SELECT 1").scalar() == 1
                client.dispose()

            await asyncio.to_thread(query)


@pytest.fixture(params=KINDS)
def clients(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Clients, str]]:
    kind = str(request.param)
    pytest.importorskip("redis" if kind == "redis" else "sqlalchemy")
    url = make_store_url(kind, tmp_path)
    made = Clients(kind)
    monkeypatch.setattr(test_contract, "open_store", made.store)
    yield made, url
    assert made.checked == len(made.made), "a store closed the client it was given"
    drop_store(kind, url)


@pytest.mark.parametrize("name", CONTRACT)
def test_the_contract_holds(name: str, clients: tuple[Clients, str]) -> None:
    made, url = clients
    getattr(test_contract, name)(url)
    assert made.made, "the store was not built from a client"


def test_a_manager_on_a_store_from_a_client(clients: tuple[Clients, str]) -> None:
    made, url = clients
    manager = SessionManager(offline_agent_factory(installed_family()), made.store(url))
    try:
        session = manager.session()
        session.send("my name is Ada")
        assert user_messages_seen(session.send("what is my name?")) == 2
    finally:
        manager.close()  # closes the store, not the client (checked by the fixture)


def test_close_leaves_the_client_open(clients: tuple[Clients, str]) -> None:
    made, url = clients

    async def scenario() -> None:
        import redis.asyncio as aioredis
        import sqlalchemy as sa

        rest = take_url_options(url, ("prefix", "table_prefix"))[0]
        if made.kind == "redis":
            client: Any = aioredis.Redis.from_url(rest)
        else:
            driver = "postgresql+psycopg" if made.kind == "postgresql" else "mysql+pymysql"
            client = sa.create_engine(driver + rest[rest.index(":") :])
        first = made.store(url, reuse=client)
        await first.create("s1", {})
        await first.close()
        second = made.store(url, reuse=client)  # the same client serves another store
        assert await second.info("s1") is not None
        await second.close()
        await made.still_open(client)  # and the application's own use of it

    asyncio.run(scenario())


def test_wrong_clients_are_refused() -> None:
    pytest.importorskip("redis")
    import redis
    import redis.asyncio as aioredis
    import sqlalchemy as sa
    from sqlalchemy.ext.asyncio import create_async_engine

    from agentsession.stores.redis import RedisStore
    from agentsession.stores.sql import SQLStore

    refusals: list[tuple[Callable[[], Any], str]] = [
        (lambda: RedisStore(client=redis.Redis()), "redis.asyncio.Redis"),
        (lambda: RedisStore(client=aioredis.Redis(decode_responses=True)), "decode_responses"),
        (lambda: RedisStore("redis://h/0", client=aioredis.Redis()), "not both"),
        (lambda: SQLStore(engine=sa.create_engine("sqlite://")), "PostgreSQL and MySQL"),
        (
            lambda: SQLStore(engine=create_async_engine("postgresql+psycopg://u@h/db")),
            "sqlalchemy.Engine",
        ),
        (
            lambda: SQLStore(
                "postgresql://u@h/db", engine=sa.create_engine("postgresql+psycopg://u@h/d")
            ),
            "not both",
        ),
    ]
    for build, message in refusals:
        with pytest.raises(ConfigurationError, match=message):
            build()


def test_messages_name_the_clients_server_not_its_password() -> None:
    pytest.importorskip("redis")
    import redis.asyncio as aioredis
    import sqlalchemy as sa

    from agentsession.stores.redis import RedisStore
    from agentsession.stores.sql import SQLStore

    redis_store = RedisStore(client=aioredis.Redis(host="cache", port=6390, password="pw-1"))
    assert redis_store._display == "redis://cache:6390/0"
    engine = sa.create_engine("postgresql+psycopg://u:pw-2@db:5433/app?sslpassword=pw-3")
    sql_store = SQLStore(engine=engine)
    assert sql_store._display == "postgresql+psycopg://u:***@db:5433/app?sslpassword=***"
    engine.dispose()
