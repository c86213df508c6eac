"""The shared core of the adapters: token signing (_tokens), the lazy session (_session), error answers (_errors)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from itsdangerous import TimestampSigner
from itsdangerous.encoding import base64_decode, base64_encode
from support import SECRET, counted, factory, store_calls

from agentsession import AsyncSessionManager, SessionManager, open_store
from agentsession.adapters._errors import ErrorAnswer, error_answer
from agentsession.adapters._session import OWNER_KEY, AsyncRequestSession, RequestSession
from agentsession.adapters._tokens import Claim, IdConfig, SessionIds, TokenSigner, cookie_value
from agentsession.errors import (
    ClobberedInstall,
    ConflictError,
    ConversationFull,
    CorruptRecord,
    InvalidSecretKey,
    MessageTooLarge,
    SessionBusy,
    StoreUnavailable,
    UnknownSchemaVersion,
)
from agentsession.offline import user_messages_seen

ID = "0123456789abcdef0123456789abcdef01234567"
OTHER = "another-secret-key-of-32-bytes-or-more"


def test_signer_round_trip_and_refusals() -> None:
    signer = TokenSigner(SECRET, max_age=60)
    token = signer.sign(ID)
    assert signer.unsign(token) == ID
    assert signer.unsign(None) is None and signer.unsign("") is None
    assert signer.unsign(ID) is None  # an unsigned id
    assert signer.unsign("x" * 5000) is None
    assert TokenSigner(OTHER, max_age=60).unsign(token) is None
    # validly signed, but not shaped like an id: never handed to a store
    weird = TimestampSigner(SECRET, salt="agentsession.session-id").sign("../x").decode()
    assert signer.unsign(weird) is None


def test_signer_expiry_and_key_rotation() -> None:
    class Old(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - 120

    old_token = Old(SECRET, salt="agentsession.session-id").sign(ID).decode()
    assert TokenSigner(SECRET, max_age=60).unsign(old_token) is None
    assert TokenSigner(SECRET, max_age=None).unsign(old_token) == ID  # a session cookie
    rotated = TokenSigner([OTHER, SECRET], max_age=None)
    assert rotated.unsign(TokenSigner(OTHER, None).sign(ID)) == ID
    assert TokenSigner(SECRET, None).unsign(rotated.sign(ID)) == ID  # the newest key signs
    for missing in ("", [], [SECRET, ""]):
        with pytest.raises(ValueError, match="secret_key"):
            TokenSigner(missing, None)


def test_tokens_are_itsdangerous_timestamp_signer_tokens_both_ways() -> None:
    """Cookies issued before (by itsdangerous) keep working, and ours verify there."""
    import secrets

    class At(TimestampSigner):  # itsdangerous, signing at the second our token names
        when = 0

        def get_timestamp(self) -> int:
            return self.when

    theirs = At(SECRET, salt="agentsession.session-id")
    ours = TokenSigner(SECRET, max_age=60)
    for length in (16, 40, 64, 128):
        for _ in range(25):
            session_id = secrets.token_urlsafe(length)[:length]
            token = ours.sign(session_id)
            theirs.when = int.from_bytes(base64_decode(token.split(".")[1]), "big")
            assert theirs.sign(session_id).decode() == token  # the same string
            assert theirs.unsign(token, max_age=60).decode() == session_id
            assert ours.unsign(theirs.sign(session_id).decode()) == session_id
    rotated = TimestampSigner([OTHER, SECRET], salt="agentsession.session-id")
    assert rotated.unsign(TokenSigner([OTHER, SECRET], None).sign(ID)).decode() == ID
    assert TokenSigner([SECRET, OTHER], None).unsign(theirs.sign(ID).decode()) == ID


def test_the_precomputed_hmac_is_hmac_sha1() -> None:
    import hashlib
    import hmac
    import os

    from agentsession.adapters._tokens import _HmacSha1

    for key_length in (0, 1, 20, 63, 64, 65, 200):
        key = os.urandom(key_length)
        mac = _HmacSha1(key)
        for length in (0, 1, 55, 64, 65, 300):
            message = os.urandom(length)
            assert mac(message) == hmac.new(key, message, hashlib.sha1).digest()
            assert mac(message) == mac(message)  # the precomputed states are not consumed


def test_a_token_signed_in_the_future_is_refused() -> None:
    class Ahead(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) + 3600

    token = Ahead(SECRET, salt="agentsession.session-id").sign(ID).decode()
    assert TokenSigner(SECRET, max_age=60).unsign(token) is None
    assert TokenSigner(SECRET, max_age=None).unsign(token) == ID  # no expiry, no clock check


def test_cookie_parsing_survives_other_apps_cookies() -> None:
    header = 'a="{\\"json\\": 1}"; broken; x=[1,2]; agentsession=tok.en.sig; z=1'
    assert cookie_value(header, "agentsession") == "tok.en.sig"
    assert cookie_value("agentsession=", "agentsession") is None
    assert cookie_value(None, "agentsession") is None
    assert cookie_value("other=1", "agentsession") is None


def test_cookie_attributes() -> None:
    config = IdConfig()
    assert config.set_cookie("t", https=False) == (
        "agentsession=t; Path=/; Max-Age=1209600; HttpOnly; SameSite=Lax"
    )
    assert "; Secure;" in config.set_cookie("t", https=True)
    assert IdConfig(max_age=None).set_cookie("t", https=False).count("Max-Age") == 0
    assert "Max-Age=0" in config.expire_cookie(https=False)
    assert "SameSite=None" in IdConfig(cookie_samesite="none").set_cookie("t", https=True)
    with pytest.raises(ValueError, match="Secure"):
        IdConfig(cookie_samesite="none", cookie_secure=False)
    with pytest.raises(ValueError, match="samesite"):
        IdConfig(cookie_samesite="sometimes")


def test_the_header_wins_and_tokens_are_verified_on_use() -> None:
    ids = SessionIds(SECRET, IdConfig())
    token = ids.signer.sign(ID)
    by_header = ids.claim(token, None)
    assert by_header.via_header and by_header.verified_id() == ID
    by_cookie = ids.claim(None, f"agentsession={token}")
    assert not by_cookie.via_header and by_cookie.verified_id() == ID
    api_client = ids.claim("new", f"agentsession={token}")
    assert api_client.via_header and api_client.verified_id() is None
    assert ids.claim(None, None).verified_id() is None


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (StoreUnavailable("redis at 10.0.0.3 is down"), 503, "store_unavailable"),
        (SessionBusy(ID, 1.0), 409, "session_busy"),
        (ConflictError("changed"), 409, "conflict"),
        (MessageTooLarge("the message is 9 bytes; the limit is 8"), 413, "message_too_large"),
        (ConversationFull("full"), 409, "conversation_full"),
        (CorruptRecord(ID, "bad json"), 500, "corrupt_record"),
        (UnknownSchemaVersion(ID, "v9"), 500, "corrupt_record"),
    ],
)
def test_error_answers(error: Exception, status: int, code: str) -> None:
    answer = error_answer(error)
    assert answer is not None and (answer.status, answer.code) == (status, code)
    assert ID not in answer.body.decode() and "10.0.0.3" not in answer.body.decode()
    if isinstance(error, MessageTooLarge):
        assert "the limit is 8" in answer.message  # a limit the client can act on


def test_busy_can_be_429_and_server_bugs_stay_500() -> None:
    answer = error_answer(SessionBusy(ID, 1.0), busy_status=429)
    assert answer is not None and answer.status == 429
    assert ("Retry-After", "1") in answer.headers
    assert error_answer(ClobberedInstall("two autogens")) is None
    assert error_answer(ValueError("a bug")) is None


def test_an_error_answer_is_an_asgi_app() -> None:
    answer = error_answer(StoreUnavailable("down"))
    assert isinstance(answer, ErrorAnswer)
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    asyncio.run(answer({"type": "http"}, receive, send))
    assert sent[0]["status"] == 503 and (b"retry-after", b"5") in sent[0]["headers"]  # type: ignore[operator]
    sent.clear()
    asyncio.run(answer({"type": "websocket"}, receive, send))
    assert sent == [{"type": "websocket.close", "code": 1013}]


# -- the lazy session, straight on the engine -------------------------------------------


def engine() -> AsyncSessionManager:
    return AsyncSessionManager(factory(), counted(open_store("memory://")))


SIGNER = TokenSigner(SECRET, None)


def claim(session_id: str | None = None) -> Claim:
    return Claim(SIGNER.sign(session_id) if session_id else None, False, SIGNER)


def test_the_owner_is_asked_only_when_the_session_is_used() -> None:
    asked: list[int] = []

    def owner() -> str:
        asked.append(1)
        return "alice"

    async def run() -> None:
        manager = engine()
        session = AsyncRequestSession(manager, claim(), owner)
        assert asked == [] and session.outgoing_id is None
        await session.send("hello")
        await session.send("again")
        assert asked == [1]
        assert (await session.metadata())[OWNER_KEY] == "alice"

    asyncio.run(run())


def test_concurrent_first_uses_agree_on_one_id() -> None:
    async def run() -> None:
        session = AsyncRequestSession(engine(), claim())
        ids = await asyncio.gather(*(session.session_id() for _ in range(10)))
        assert len(set(ids)) == 1

    asyncio.run(run())


def test_delete_then_use_starts_a_new_conversation_under_a_new_id() -> None:
    async def run() -> None:
        manager = engine()
        first = AsyncRequestSession(manager, claim())
        await first.send("hello")
        old = await first.session_id()
        adopted = AsyncRequestSession(manager, claim(old))
        assert await adopted.delete() is True
        assert adopted.outgoing_id is None and adopted.deleted
        reply = await adopted.send("hello again")
        assert user_messages_seen(reply) == 1
        assert await adopted.session_id() != old and await manager.info(old) is None

    asyncio.run(run())


def test_a_fresh_session_reads_and_rotates_without_io() -> None:
    async def run() -> None:
        manager = engine()
        session = AsyncRequestSession(manager, claim())
        assert await session.history() == [] and await session.metadata() == {}
        assert await session.exists() is False
        await session.reset()
        await session.rotate()
        assert store_calls(manager.store) == 0 and session.outgoing_id is None

    asyncio.run(run())


def test_set_metadata_cannot_forge_the_owner() -> None:
    async def run() -> None:
        manager = engine()
        session = AsyncRequestSession(manager, claim(), lambda: "alice")
        await session.set_metadata({"topic": "tea", OWNER_KEY: "mallory"})
        assert await session.metadata() == {"topic": "tea", OWNER_KEY: "alice"}
        anonymous = AsyncRequestSession(manager, claim())
        await anonymous.set_metadata({OWNER_KEY: "mallory"})
        assert await anonymous.metadata() == {}

    asyncio.run(run())


def test_the_sync_session_asks_the_owner_in_the_callers_thread() -> None:
    threads: list[int] = []

    def owner() -> str:
        threads.append(threading.get_ident())
        return "alice"

    manager = SessionManager(factory(), "memory://")
    try:
        session = RequestSession(AsyncRequestSession(manager.engine, claim(), owner))
        assert user_messages_seen(session.send("hello")) == 1
        assert threads == [threading.get_ident()]
        assert session.metadata()[OWNER_KEY] == "alice"
        assert repr(session).startswith("<RequestSession ")
    finally:
        manager.close()


def test_the_request_session_pages_undoes_and_appends() -> None:
    from agentsession import Message

    async def run() -> None:
        manager = engine()
        session = AsyncRequestSession(manager, claim())
        assert await session.history(limit=2) == [] and await session.pop_turn() == []
        for text in ("one", "two", "three"):
            await session.send(text)
        old = await session.session_id()
        adopted = AsyncRequestSession(manager, claim(old))
        assert (await adopted.history(limit=2))[0].content == "three"
        assert (await adopted.pop_turn())[0].content == "three"
        await adopted.append([Message("assistant", "an operator's note")])
        assert [m.content for m in await manager.history(old)][-1] == "an operator's note"
        assert len(await manager.history(old)) == 5

    asyncio.run(run())


def non_canonical(token: str) -> dict[str, str]:
    """Strings that itsdangerous' lenient base64 decodes to the same signed id as ``token``."""
    signature = token.rsplit(".", 1)[1]
    raw = base64_decode(signature)
    twins = [
        token[:-1] + digit
        for digit in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        if digit != token[-1] and base64_decode(signature[:-1] + digit) == raw
    ]
    assert twins, "a 20-byte signature leaves slack bits in its last base64 digit"
    return {
        "padded": token + "==",
        "one pad": token + "=",
        "non-ascii appended": token + "\u00e9",
        "non-ascii inside": token[:-3] + "\u00e9" + token[-3:],
        **{f"last digit {twin[-1]}": twin for twin in twins},
    }


def test_only_the_canonical_token_verifies() -> None:
    signer = TokenSigner(SECRET, max_age=60)
    token = signer.sign(ID)
    assert signer.unsign(token) == ID
    lenient = TimestampSigner(SECRET, salt="agentsession.session-id")
    for name, variant in non_canonical(token).items():
        assert lenient.unsign(variant, max_age=60).decode() == ID, name  # what main accepted
        assert signer.unsign(variant) is None, name
    # a timestamp with a leading zero byte decodes to the same time
    value, timestamp, _ = token.split(".")
    padded_time = base64_encode(b"\0" + base64_decode(timestamp)).decode()
    resigned = lenient.get_signature(f"{value}.{padded_time}".encode()).decode()
    assert lenient.unsign(f"{value}.{padded_time}.{resigned}").decode() == ID
    assert signer.unsign(f"{value}.{padded_time}.{resigned}") is None


@pytest.mark.parametrize("missing", [None, "", [], [SECRET, ""], [SECRET, None]])
def test_a_missing_secret_key_says_so(missing: Any) -> None:
    with pytest.raises(InvalidSecretKey, match="needs a secret_key") as caught:
        TokenSigner(missing, None)
    assert isinstance(caught.value, ValueError)  # what callers caught before
    assert "secrets.token_hex(32)" in str(caught.value)


@pytest.mark.parametrize("short", ["change me", b"x" * 31, [SECRET, "old"]])
def test_a_short_secret_key_is_refused(short: Any) -> None:
    with pytest.raises(InvalidSecretKey, match="at least 32 bytes") as caught:
        TokenSigner(short, None)
    assert "secrets.token_hex(32)" in str(caught.value)
    assert "change me" not in str(caught.value) and "'old'" not in str(caught.value)  # not echoed
    assert TokenSigner("é" * 16, None).sign(ID)  # 32 bytes of UTF-8


def test_samesite_none_is_always_secure() -> None:
    config = IdConfig(cookie_samesite="none")
    for https in (False, True):
        parts = config.set_cookie("t", https=https).split("; ")
        assert "Secure" in parts and "SameSite=None" in parts
        assert "Secure" in config.expire_cookie(https=https).split("; ")


def test_the_request_sessions_have_an_id_like_sessions() -> None:
    async def run() -> None:
        session = AsyncRequestSession(engine(), claim())
        assert session.id is None  # nothing resolved, nothing read
        await session.send("hello")
        assert session.id == await session.session_id()

    asyncio.run(run())
    with SessionManager(factory(), "memory://") as manager:
        sync = RequestSession(AsyncRequestSession(manager.engine, claim()))
        assert sync.id == sync.session_id() and len(sync.id) == 40
