"""The adapters' promises, the same tests for each: Starlette and FastAPI (ASGI), WSGI, Flask.

In process: httpx's ASGI and WSGI transports. Real servers are in ``test_servers.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from itsdangerous import TimestampSigner
from support import ADAPTERS, SECRET, Harness, cookie_token, counted, set_cookies

from agentsession import new_session_id, open_store
from agentsession.offline import user_messages_seen

SALT = "agentsession.session-id"
MakeHarness = Callable[..., Harness]


@pytest.fixture(params=ADAPTERS)
def adapter(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make(adapter: str) -> Iterator[MakeHarness]:
    made: list[Harness] = []

    def build(store: Any = None, **options: Any) -> Harness:
        harness = Harness(adapter, store or counted(open_store("memory://")), **options)
        made.append(harness)
        return harness

    yield build
    for harness in made:
        harness.close()


def seen(response: Any) -> int | None:
    assert response.status_code == 200, response.text
    return user_messages_seen(response.json()["reply"])


def test_one_client_keeps_one_conversation(adapter: str, store_url: str) -> None:
    harness = Harness(adapter, store_url)
    try:
        client = harness.client()
        first = client.say("hello")
        second = client.say("what did I say earlier?")
        assert first.json()["id"] == second.json()["id"]
        assert seen(second) == 2 and "'hello'" in second.json()["reply"]
        cookie = set_cookies(first)[0]
        for part in ("HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=1209600"):
            assert part in cookie
        assert "Secure" not in cookie  # plain http: the default follows the request's scheme
        # HttpOnly would be pointless if page scripts could read the token from a header
        assert "x-agent-session" not in first.headers
    finally:
        harness.close()


def test_two_clients_never_meet(make: MakeHarness) -> None:
    harness = make()
    alice, bob = harness.client(), harness.client()
    alice.say("alice's secret is 1")
    reply = bob.say("what did I say earlier?")
    assert seen(reply) == 1 and "secret" not in reply.json()["reply"]
    assert bob.get("/history").json()["messages"] == [
        "what did I say earlier?",
        reply.json()["reply"],
    ]
    assert alice.get("/history").json()["messages"][0] == "alice's secret is 1"


class _OldSigner(TimestampSigner):
    def get_timestamp(self) -> int:
        return int(time.time()) - 365 * 24 * 3600


def bad_token(kind: str, victim_id: str) -> str:
    good = TimestampSigner(SECRET, salt=SALT)
    token = good.sign(victim_id).decode()
    return {
        "garbage": "%%%not-a-token%%%",
        "empty": "",
        "unsigned id": victim_id,
        # another id under the victim's signature (the last base64 digit has slack bits)
        "tampered": ("1" if token[0] == "0" else "0") + token[1:],
        "tampered signature": token[:-10] + ("A" if token[-10] != "A" else "B") + token[-9:],
        "wrong key": TimestampSigner("another-key", salt=SALT).sign(victim_id).decode(),
        "wrong salt": TimestampSigner(SECRET, salt="itsdangerous.Signer").sign(victim_id).decode(),
        "expired": _OldSigner(SECRET, salt=SALT).sign(victim_id).decode(),
        "signed but unknown": good.sign(new_session_id()).decode(),
        "signed, deleted": token,
        "signed, not an id": good.sign("../../etc/passwd").decode(),
    }[kind]


@pytest.mark.parametrize("carrier", ["cookie", "header"])
@pytest.mark.parametrize(
    "kind",
    ["garbage", "empty", "unsigned id", "tampered", "tampered signature", "wrong key", "wrong salt", "expired",
     "signed but unknown", "signed, deleted", "signed, not an id"],
)  # fmt: skip
def test_a_bad_token_starts_a_fresh_conversation(
    make: MakeHarness, kind: str, carrier: str
) -> None:
    harness = make()
    victim = harness.client()
    victim_id = victim.say("the victim's secret").json()["id"]
    if kind == "signed, deleted":
        assert victim.post("/delete").json() == {"deleted": True}
    token = bad_token(kind, victim_id)
    if carrier == "cookie":
        attacker = harness.client(cookies={"agentsession": token})
    else:
        attacker = harness.client(headers={"X-Agent-Session": token})
    response = attacker.say("what did I say earlier?")
    assert seen(response) == 1 and "secret" not in response.json()["reply"]
    assert response.json()["id"] != victim_id
    if kind == "signed, deleted":  # not re-created under the old id
        assert harness.run(harness.store.info(victim_id)) is None
    else:
        assert victim.get("/history").json()["messages"][0] == "the victim's secret"


def test_api_clients_carry_the_token_in_the_header(make: MakeHarness) -> None:
    harness = make()
    # an API client without a token yet sends any value; it gets its token in the same header
    api = harness.client(headers={"X-Agent-Session": "new"})
    first = api.say("one")
    token = first.headers["x-agent-session"]
    assert set_cookies(first) == [] and not api.cookies
    again = harness.client(headers={"X-Agent-Session": token})
    assert seen(again.say("two")) == 2


def test_a_route_that_ignores_its_session_costs_nothing(make: MakeHarness) -> None:
    harness = make()
    client = harness.client()
    client.say("hello")  # the client now sends a valid cookie
    before = harness.calls()
    response = client.get("/plain")
    assert response.text == "no session here"
    assert harness.calls() == before
    assert set_cookies(response) == [] and "x-agent-session" not in response.headers
    for i in range(20):  # forged tokens are refused on the CPU, without a store lookup
        forged = harness.client(cookies={"agentsession": f"forged.{i}.x"})
        assert forged.get("/plain").status_code == 200
    assert harness.calls() == before


def test_reading_a_brand_new_conversation_costs_nothing(make: MakeHarness) -> None:
    harness = make()
    response = harness.client().get("/history")
    assert response.json() == {"messages": []}
    assert harness.calls() == 0 and set_cookies(response) == []


def test_reading_a_conversation_is_one_store_read(make: MakeHarness) -> None:
    # adopting the claimed id and reading the history share one load: one round trip
    harness = make()
    alice = harness.client(headers={"X-User": "alice"})
    alice.say("alice's secret")
    harness.store.calls.clear()  # type: ignore[attr-defined]
    response = alice.get("/history")
    assert len(response.json()["messages"]) == 2
    assert dict(harness.store.calls) == {"load": 1}  # type: ignore[attr-defined]
    assert cookie_token(response) is not None  # the sliding expiry moves on a read too
    # the same read refuses another user: the loaded history is not handed out
    token = alice.cookies["agentsession"]
    for user in ("bob", None):
        headers = {"X-User": user} if user else {}
        other = harness.client(headers=headers, cookies={"agentsession": token})
        refused = other.get("/history")
        assert refused.json() == {"messages": []} and set_cookies(refused) == []


def test_rotate_keeps_the_conversation_under_a_new_id(make: MakeHarness) -> None:
    harness = make()
    client = harness.client()
    old = client.say("before login").json()["id"]
    old_token = client.cookies["agentsession"]
    new = client.post("/rotate").json()["id"]
    assert new != old and client.cookies["agentsession"] != old_token
    assert seen(client.say("after login")) == 2
    stale = harness.client(cookies={"agentsession": old_token})
    assert seen(stale.say("the old id?")) == 1
    assert harness.run(harness.store.info(old)) is None


def test_delete_forgets_the_conversation_and_expires_the_cookie(make: MakeHarness) -> None:
    harness = make()
    client = harness.client()
    old = client.say("hello").json()["id"]
    response = client.post("/delete")
    assert response.json() == {"deleted": True}
    assert any("Max-Age=0" in c for c in set_cookies(response))
    fresh = client.say("hello again")
    assert seen(fresh) == 1 and fresh.json()["id"] != old


def test_owner_binding(make: MakeHarness) -> None:
    harness = make()
    alice = harness.client(headers={"X-User": "alice"})
    alice.say("alice's secret")
    token = alice.cookies["agentsession"]
    for user in ("bob", None):  # another user, or nobody: a fresh conversation
        headers = {"X-User": user} if user else {}
        other = harness.client(headers=headers, cookies={"agentsession": token})
        reply = other.say("what did I say earlier?")
        assert seen(reply) == 1 and "secret" not in reply.json()["reply"]
    again = harness.client(headers={"X-User": "alice"}, cookies={"agentsession": token})
    assert seen(again.say("me again")) == 2
    # an anonymous conversation is claimed at login, and is then its user's only
    anonymous = harness.client()
    anonymous.say("before login")
    anon_token = anonymous.cookies["agentsession"]
    carol = harness.client(headers={"X-User": "carol"}, cookies={"agentsession": anon_token})
    assert seen(carol.say("after login")) == 2
    dave = harness.client(headers={"X-User": "dave"}, cookies={"agentsession": anon_token})
    assert seen(dave.say("mine?")) == 1


def test_store_down_is_503(make: MakeHarness, tmp_path: Any) -> None:
    harness = make(f"sqlite:///{tmp_path}/no-such-dir/agents.db")
    response = harness.client().say("hello")
    assert response.status_code == 503
    assert response.json()["code"] == "store_unavailable"
    assert response.headers["retry-after"] == "5"
    assert "no-such-dir" not in response.text  # server paths stay in the log


def test_oversized_message_is_413(make: MakeHarness) -> None:
    harness = make(max_message_bytes=10)
    client = harness.client()
    response = client.say("x" * 11)
    assert response.status_code == 413 and response.json()["code"] == "message_too_large"
    assert seen(client.say("short")) == 1


def test_text_that_is_not_valid_unicode_is_400(make: MakeHarness) -> None:
    # valid JSON whose string holds a lone surrogate: no store can encode it as UTF-8
    client = make().client()
    response = client.post(
        "/chat", content=b'{"text": "abc\\ud800"}', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and response.json()["code"] == "invalid_input"
    assert "lone surrogate at position 3" in response.json()["detail"]
    assert seen(client.say("fine")) == 1  # nothing half-written


@pytest.mark.parametrize("busy_status", [409, 429])
def test_a_busy_conversation_is_409_or_429(make: MakeHarness, busy_status: int) -> None:
    harness = make(lock_timeout=0.2, busy_status=busy_status)
    client = harness.client()
    session_id = client.say("one").json()["id"]
    lease = harness.run(harness.store.acquire(session_id, 30))  # another worker's turn
    assert lease is not None
    try:
        response = client.say("two")
    finally:
        harness.run(harness.store.release(session_id, lease))
    assert response.status_code == busy_status and response.json()["code"] == "session_busy"
    assert response.headers["retry-after"] == "1"
    assert seen(client.say("three")) == 2


def test_cookie_settings(make: MakeHarness) -> None:
    harness = make(
        cookie_name="chat",
        cookie_path="/app",
        cookie_domain="testserver.local",
        max_age=600,
        cookie_samesite="strict",
    )
    response = harness.client().say("hello")
    cookie = set_cookies(response)[0]
    assert cookie.startswith("chat=")
    for part in ("Path=/app", "Domain=testserver.local", "Max-Age=600", "SameSite=Strict"):
        assert part in cookie


@pytest.mark.parametrize(("secure", "https", "expected"), [
    (None, True, True), (None, False, False), (True, False, True), (False, True, False),
])  # fmt: skip
def test_secure_follows_the_scheme_unless_set(
    make: MakeHarness, secure: bool | None, https: bool, expected: bool
) -> None:
    harness = make(cookie_secure=secure)
    cookie = set_cookies(harness.client(https=https).say("hello"))[0]
    assert ("Secure" in cookie.split("; ")) is expected


def test_sliding_expiry_and_key_rotation(make: MakeHarness) -> None:
    old = make(secret_key="an-old-secret-key-of-32-bytes-or-more")
    client = old.client()
    client.say("signed with the old key")
    token = client.cookies["agentsession"]
    rotated = make(old.store, secret_key=["an-old-secret-key-of-32-bytes-or-more", SECRET])
    again = rotated.client(cookies={"agentsession": token})
    response = again.say("verified with the old key")
    assert seen(response) == 2
    new_token = cookie_token(response)  # re-signed on use (sliding expiry), with the newest key
    assert new_token is not None and new_token != token
    assert TimestampSigner(SECRET, salt=SALT).validate(new_token)


@pytest.mark.parametrize("carrier", ["cookie", "header"])
def test_a_non_canonical_token_is_not_the_session(make: MakeHarness, carrier: str) -> None:
    """``token + "=="``, a non-ASCII character, another last digit: each is a fresh session."""
    from test_core import non_canonical

    harness = make()
    victim = harness.client()
    victim_id = victim.say("the victim's secret").json()["id"]
    token = victim.cookies["agentsession"]
    for name, variant in non_canonical(token).items():
        if not harness.asgi and not variant.isascii():
            continue  # httpx's WSGI transport cannot send it; the signer's own test covers it
        if carrier == "cookie":
            other = harness.client(headers={"Cookie": f"agentsession={variant}".encode()})
        else:
            other = harness.client(headers={"X-Agent-Session": variant.encode()})
        response = other.say("what did I say earlier?")
        assert response.status_code == 200, (name, response.text)
        assert seen(response) == 1 and response.json()["id"] != victim_id, name


def test_samesite_none_cookies_are_secure_over_plain_http(make: MakeHarness) -> None:
    harness = make(cookie_samesite="none")
    cookie = set_cookies(harness.client(https=False).say("hello"))[0].split("; ")
    assert "SameSite=None" in cookie and "Secure" in cookie  # browsers drop it otherwise
