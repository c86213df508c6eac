"""Store URLs that cannot work fail when parsed, and ``create_schema=False`` creates nothing."""

from __future__ import annotations

import asyncio
import importlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from conftest import make_store_url, need_server

from agentsession import ConfigurationError
from agentsession.errors import MissingDependency, StoreNotFound
from agentsession.messages import user
from agentsession.stores import open_store, store_class
from agentsession.stores.base import redact_url, take_url_options


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("redis://127.0.0.1:65536/0", "the port '65536' in redis://127.0.0.1:65536/0"),
        ("redis://127.0.0.1/db1", "the Redis database in redis://127.0.0.1/db1 is 'db1'"),
        ("redis://127.0.0.1/-1", "is '-1'"),
        ("rediss://:s3cret@127.0.0.1:x/0", "the port 'x' in rediss://***/0"),
        ("postgresql://u:pw@db.example:5432x/app", "the port '5432x'"),
        ("mysql://root@127.0.0.1:3306/test?ttl=abc", "?ttl=abc in mysql://root@127.0.0.1"),
        ("postgresql://u@h/db?ttl=0", "?ttl=0"),
        ("redis://127.0.0.1/0?ttl=inf", "not a positive number of seconds"),
        ("sqlite:///a.db?ttl=-1", "?ttl=-1 in sqlite:///a.db"),
        ("sqlite:///a.db?busy_timeout=soon", "?busy_timeout=soon"),
        ("agents.db", "not a store URL: name a scheme, e.g. sqlite:///agents.db"),
        ("nosuch://u:pw@h", "no store for URL scheme 'nosuch' in nosuch://u:***@h"),
    ],
)
def test_a_url_that_cannot_work_is_a_configuration_error(url: str, words: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        open_store(url)
    assert words in str(caught.value)
    assert "pw" not in str(caught.value) and "s3cret" not in str(caught.value)


def test_urls_that_work_still_parse() -> None:
    for url in (
        "redis://127.0.0.1:6379/15?ttl=60",
        "unix:///tmp/redis.sock",
        "sqlite:///a.db?ttl=1.5",
    ):
        assert open_store(url).ttl in (60.0, None, 1.5)


def test_a_socket_url_keeps_its_empty_authority() -> None:
    # redis-py 8.2 takes unix:///path only, not the unix:/path urlunsplit writes
    for url, rest in (
        ("unix:///tmp/redis.sock", "unix:///tmp/redis.sock"),
        ("unix:///tmp/redis.sock?prefix=app:&db=2", "unix:///tmp/redis.sock?db=2"),
        ("sqlite:///a.db?ttl=1.5", "sqlite:///a.db"),
        ("redis://h:6379/0?prefix=p", "redis://h:6379/0"),
    ):
        assert take_url_options(url, ("prefix", "ttl"))[0] == rest


def test_redact_url() -> None:
    assert (
        redact_url("postgresql://u:p%40ss@h:5432/db?sslmode=require")
        == "postgresql://u:***@h:5432/db?sslmode=require"  # options that are no secret stay
    )
    assert redact_url("sqlite:////abs/agentsession.db") == "sqlite:////abs/agentsession.db"


def test_the_mysql_schemes_name_the_mysql_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> Any:
        raise MissingDependency("sqlalchemy", "postgresql", "The SQL store")

    monkeypatch.setattr(importlib, "import_module", missing)
    for scheme, extra in (("mysql", "mysql"), ("mariadb", "mysql"), ("postgresql", "postgresql")):
        with pytest.raises(MissingDependency, match=rf"agentsession-middleware\[{extra}\]"):
            store_class(f"{scheme}://h/db")


async def _roundtrip(url: str) -> Any:
    store = open_store(url, create_schema=False)
    try:
        await store.create("s", {})
        await store.append("s", [user("hello")], 0)
        return await store.load("s")
    finally:
        await store.close()


def test_create_schema_false_on_a_missing_sqlite_file_creates_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'typo.db'}"
    with pytest.raises(StoreNotFound, match="the file does not exist"):
        asyncio.run(_roundtrip(url))
    assert list(tmp_path.iterdir()) == []


def test_create_schema_false_on_a_sqlite_file_of_another_program(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "other.db") as db:
        db.execute("CREATE TABLE notes (body TEXT)")
    with pytest.raises(StoreNotFound, match="no agentsession tables"):
        asyncio.run(_roundtrip(f"sqlite:///{tmp_path / 'other.db'}"))
    with sqlite3.connect(tmp_path / "other.db") as db:
        names = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    assert names == ["notes"] and mode == "delete"  # not even switched to WAL


@pytest.mark.parametrize("kind", ["postgresql", "mariadb"])
def test_create_schema_false_on_a_sql_server_creates_no_tables(kind: str) -> None:
    import sqlalchemy as sa

    url = make_store_url(kind, Path("."))
    prefix = url.rpartition("table_prefix=")[2]
    with pytest.raises(StoreNotFound, match=f"no agentsession tables named {prefix}"):
        asyncio.run(_roundtrip(url))
    base = url.partition("?")[0]
    driver = base.replace("postgresql://", "postgresql+psycopg://").replace(
        "mysql://", "mysql+pymysql://"
    )
    engine = sa.create_engine(driver)
    try:
        assert [t for t in sa.inspect(engine).get_table_names() if t.startswith(prefix)] == []
    finally:
        engine.dispose()


def test_create_schema_false_opens_an_existing_store(durable_store_url: str) -> None:
    async def create() -> None:
        store = open_store(durable_store_url)
        try:
            await store.list()  # SQLite and SQL create their tables on first use
        finally:
            await store.close()

    asyncio.run(create())
    conversation = asyncio.run(_roundtrip(durable_store_url))
    assert [m.content for m in conversation.messages] == ["hello"]


def test_a_redis_database_the_server_does_not_have_is_a_configuration_error() -> None:
    url = need_server("redis").rsplit("/", 1)[0] + "/999"

    async def ping() -> None:
        store = open_store(url)
        try:
            await store.ping()
        finally:
            await store.close()

    with pytest.raises(ConfigurationError, match="has no database with that number"):
        asyncio.run(ping())
