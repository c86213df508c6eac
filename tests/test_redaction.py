"""No credential from a store URL reaches an error, a log record or the CLI's output.

Every store's URL, with the secret in every place it can go (the userinfo password, query
parameters such as ``password``/``passwd``/``sslpassword``), pointed at a port where nothing
listens: the errors, the logs of a 503 and the CLI's output are grepped for the secret.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import httpx
import pytest

from agentsession import AsyncSessionManager, StoreUnavailable
from agentsession.cli import main
from agentsession.offline import installed_family, offline_agent_factory
from agentsession.stores import open_store, redact_url

SECRET = "Hunter2-Secret"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def down_urls() -> dict[str, str]:
    port = closed_port()
    host = f"127.0.0.1:{port}"
    urls = {
        "postgresql password": f"postgresql://postgres:{SECRET}@{host}/test",
        "postgresql ?password": f"postgresql://postgres@{host}/test?password={SECRET}",
        "postgresql ?sslpassword": f"postgres://u@{host}/test?sslpassword={SECRET}&connect_timeout=2",
        "mysql password": f"mysql://root:{SECRET}@{host}/test",
        "mysql ?password": f"mysql://root@{host}/test?password={SECRET}",
        "mysql ?passwd": f"mariadb://root@{host}/test?passwd={SECRET}",
        "redis :password@": f"redis://:{SECRET}@{host}/0",
        "rediss user:password@": f"rediss://default:{SECRET}@{host}/0",
        "redis ?password": f"redis://{host}/0?password={SECRET}",
    }
    return urls


URLS = down_urls()


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"postgresql://u:{SECRET}@db:5432/app", "postgresql://u:***@db:5432/app"),
        (f"postgresql://u@db/app?password={SECRET}&x=1", "postgresql://u@db/app?password=***&x=1"),
        (f"postgresql://u@db/app?PassWord={SECRET}", "postgresql://u@db/app?PassWord=***"),
        (f"postgresql://u@db/app?pass%77ord={SECRET}", "postgresql://u@db/app?pass%77ord=***"),
        (f"postgresql://u@db/app?sslpassword={SECRET}", "postgresql://u@db/app?sslpassword=***"),
        (f"mysql+pymysql://root@db/app?passwd={SECRET}", "mysql+pymysql://root@db/app?passwd=***"),
        (f"mysql://root@db/app?pwd={SECRET}", "mysql://root@db/app?pwd=***"),
        (f"redis://:{SECRET}@cache:6379/0", "redis://:***@cache:6379/0"),
        (f"rediss://default:{SECRET}@cache/0", "rediss://default:***@cache/0"),
        (
            f"unix:///run/redis.sock?db=0&password={SECRET}",
            "unix:///run/redis.sock?db=0&password=***",
        ),
        (
            f"redis://cache/0?token={SECRET}&api_key={SECRET}",
            "redis://cache/0?token=***&api_key=***",
        ),
        (f"postgresql://u:p@{SECRET}@db/app", "postgresql://u:***@db/app"),  # an unescaped @
        (f"redis://:pw#{SECRET}@cache/0", "redis://***#***"),  # an unescaped # cuts the URL
        (f"postgresql://[::1:{SECRET}", "***"),  # unparseable: nothing shown
        ("sqlite:///agents.db?synchronous=normal", "sqlite:///agents.db?synchronous=normal"),
        ("memory://", "memory://"),
        ("postgresql://u@db/app?sslmode=require", "postgresql://u@db/app?sslmode=require"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown
    assert SECRET not in redact_url(url)


@pytest.mark.parametrize("name", list(URLS))
def test_store_errors_name_the_server_not_the_secret(name: str) -> None:
    url = URLS[name]

    async def ping() -> None:
        store = open_store(url)
        try:
            await store.ping()
        finally:
            await store.close()

    with pytest.raises(StoreUnavailable) as caught:
        asyncio.run(ping())
    message = str(caught.value)
    assert SECRET not in message and url.split("@")[-1].split("/")[0].split(":")[-1] in message


@pytest.mark.parametrize("name", list(URLS))
def test_a_503_logs_no_secret(name: str, caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("starlette")
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from agentsession.adapters.asgi import AgentSessionMiddleware

    async def chat(request: Request) -> JSONResponse:
        return JSONResponse({"reply": await request.state.agent_session.send("hello")})

    async def run() -> httpx.Response:
        manager = AsyncSessionManager(offline_agent_factory(installed_family()), URLS[name])
        app = AgentSessionMiddleware(
            Starlette(routes=[Route("/chat", chat, methods=["POST"])]),
            manager,
            secret_key="a-secret-key-for-signing-of-32-bytes",
        )
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return await client.post("/chat")
        finally:
            await manager.aclose()

    caplog.set_level(logging.DEBUG)
    response = asyncio.run(run())
    assert response.status_code == 503 and response.headers["Retry-After"]
    assert SECRET not in response.text
    assert any("answering 503" in record.getMessage() for record in caplog.records)
    for record in caplog.records:
        assert SECRET not in record.getMessage(), record.getMessage()
        assert SECRET not in caplog.text


@pytest.mark.parametrize("name", list(URLS))
@pytest.mark.parametrize(
    "command",
    [["ls"], ["show", "abc"], ["rm", "abc"], ["doctor", "--no-round-trip"], ["store", "init"]],
    ids=" ".join,
)
def test_the_cli_prints_no_secret(
    name: str, command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = URLS[name]
    argv = [*command, url] if command[0] == "store" else [*command, "--store", url]
    assert main(argv) != 0
    out, err = capsys.readouterr()
    assert SECRET not in out and SECRET not in err
    assert "unavailable" in out + err


@pytest.mark.parametrize(
    "url",
    [
        f"foo://u:{SECRET}@host/x",  # an unknown scheme
        f"redis://:{SECRET}@127.0.0.1:abc/0",  # a port that is not a number
    ],
)
def test_bad_urls_are_not_echoed_with_their_secret(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["doctor", "--no-round-trip", "--store", url])
    out, err = capsys.readouterr()
    assert SECRET not in out and SECRET not in err
