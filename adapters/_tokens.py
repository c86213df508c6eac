"""Signed conversation ids on the wire: the token, the cookie and the header.

A request carries a signed id in a cookie (browsers) or a header (API clients). Checking the
signature is CPU only and happens on the session's first use; a token that is forged,
tampered, expired or garbage simply verifies as nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agentsession.errors import InvalidSecretKey

if TYPE_CHECKING:
    from ._session import AsyncRequestSession

COOKIE_NAME = "agentsession"
HEADER_NAME = "X-Agent-Session"
MAX_AGE = 14 * 24 * 3600

SecretKey = str | bytes | Iterable[str | bytes]
"""One key, or several (oldest first): the last one signs, every one verifies."""

MIN_SECRET_BYTES = 32
MAKE_A_SECRET = 'python -c "import secrets; print(secrets.token_hex(32))"'

_SALT = "agentsession.session-id"
_ID_SHAPE = re.compile(r"[A-Za-z0-9_-]{16,128}")
# id . timestamp . signature, each part in itsdangerous' unpadded URL-safe base64 alphabet
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]{16,128}\.[A-Za-z0-9_-]{2,12}\.[A-Za-z0-9_-]{16,128}")
_SAMESITE = {"lax": "Lax", "strict": "Strict", "none": "None"}


@dataclass(frozen=True)
class IdConfig:
    """Where the signed id travels, and the cookie's attributes. Always ``HttpOnly``.

    ``cookie_secure=None`` marks the cookie ``Secure`` when the request came over HTTPS.
    """

    cookie_name: str = COOKIE_NAME
    header_name: str = HEADER_NAME
    max_age: int | None = MAX_AGE
    cookie_path: str = "/"
    cookie_domain: str | None = None
    cookie_secure: bool | None = None
    cookie_samesite: str = "lax"

    def __post_init__(self) -> None:
        if self.cookie_samesite.lower() not in _SAMESITE:
            raise ValueError(
                f"cookie_samesite must be lax, strict or none, not {self.cookie_samesite!r}"
            )
        if self.cookie_samesite.lower() == "none" and self.cookie_secure is False:
            raise ValueError("browsers drop SameSite=None cookies that are not Secure")

    def set_cookie(self, token: str, https: bool) -> str:
        return self._cookie(f"{self.cookie_name}={token}", self.max_age, https)

    def expire_cookie(self, https: bool) -> str:
        return self._cookie(f"{self.cookie_name}=", 0, https)

    def _cookie(self, pair: str, max_age: int | None, https: bool) -> str:
        parts = [pair, f"Path={self.cookie_path}"]
        if max_age is not None:
            parts.append(f"Max-Age={max_age}")
        if self.cookie_domain:
            parts.append(f"Domain={self.cookie_domain}")
        samesite = _SAMESITE[self.cookie_samesite.lower()]
        # browsers drop a SameSite=None cookie that is not Secure, even over plain HTTP
        if self.cookie_secure or (self.cookie_secure is None and https) or samesite == "None":
            parts.append("Secure")
        parts += ["HttpOnly", f"SameSite={samesite}"]
        return "; ".join(parts)


def cookie_value(cookie_header: str | None, name: str) -> str | None:
    """The value of cookie ``name``; tolerant of the malformed cookies other apps set."""
    # http.cookies.SimpleCookie gives up on the whole header at the first odd cookie
    if not cookie_header:
        return None
    for chunk in cookie_header.split(";"):
        key, sep, value = chunk.partition("=")
        if sep and key.strip() == name:
            return value.strip().strip('"') or None
    return None


class TokenSigner:
    """Signs ids with a timestamp, in the format of itsdangerous' ``TimestampSigner`` (as Flask
    signs its session cookie): ``id.timestamp.signature``, HMAC-SHA1 under a key derived from
    the secret and the salt ("django-concat"), URL-safe base64 without padding.

    Tokens are interchangeable with itsdangerous' own (the tests check both ways); this
    implementation derives its keys and their HMAC pads once, where itsdangerous does both
    for every token: a few µs a request that uses its session, not 20.
    """

    def __init__(self, secret_key: SecretKey | None, max_age: int | None) -> None:
        salt = _SALT.encode("ascii")
        macs = [
            _HmacSha1(hashlib.sha1(salt + b"signer" + key).digest())
            for key in secret_keys(secret_key)
        ]
        self._mac = macs[-1]  # the newest key signs
        self._macs = macs[::-1]  # newest first: the common case verifies on the first try
        self.max_age = max_age

    def sign(self, session_id: str) -> str:
        now = int(time.time())
        value = f"{session_id}.".encode("ascii") + _b64(
            now.to_bytes((now.bit_length() + 7) // 8, "big")
        )
        return (value + b"." + _b64(self._mac(value))).decode("ascii")

    def unsign(self, token: str | None) -> str | None:
        """The id in ``token``; None if it is forged, tampered, expired or garbage."""
        if not token or not _TOKEN_SHAPE.fullmatch(token):
            return None
        value, _, signature = token.rpartition(".")
        session_id, _, timestamp = value.partition(".")
        # only the one encoding sign() produces is accepted (itsdangerous also takes "=="
        # appended, or other values of the last character's unused bits), so one session has
        # one token string: rate limits, logs and caches key on it
        mac, stamp = _unb64(signature), _unb64(timestamp)
        if mac is None or stamp is None or stamp[:1] == b"\0":
            return None
        message = value.encode("ascii")
        if not any(hmac.compare_digest(sign(message), mac) for sign in self._macs):
            return None
        if self.max_age is not None:
            age = int(time.time()) - int.from_bytes(stamp, "big")
            if age > self.max_age or age < 0:  # expired, or signed in the future
                return None
        return session_id if _ID_SHAPE.fullmatch(session_id) else None


def secret_keys(secret_key: SecretKey | None) -> list[bytes]:
    """The signing keys as bytes (oldest first), or ``InvalidSecretKey`` saying how to fix it."""
    how = f"Make one with: {MAKE_A_SECRET}"
    if secret_key is None:
        raise InvalidSecretKey(
            "agentsession needs a secret_key to sign conversation ids, and got None "
            f"(is the environment variable that should hold it set?). {how}"
        )
    keys = [secret_key] if isinstance(secret_key, (str, bytes)) else list(secret_key)
    if not keys or not all(isinstance(key, (str, bytes)) and key for key in keys):
        raise InvalidSecretKey(f"agentsession needs a secret_key to sign conversation ids. {how}")
    encoded = [key.encode() if isinstance(key, str) else key for key in keys]
    for key in encoded:
        if len(key) < MIN_SECRET_BYTES:  # the key itself is never echoed
            raise InvalidSecretKey(
                f"agentsession's secret_key must be at least {MIN_SECRET_BYTES} bytes, and one "
                f"of them is {len(key)}: anyone who guesses it can forge session tokens. {how}"
            )
    return encoded


class _HmacSha1:
    """HMAC-SHA1 under one key (RFC 2104), its padded key states hashed once, not per token."""

    def __init__(self, key: bytes) -> None:
        if len(key) > 64:  # longer than SHA-1's block: hashed first (RFC 2104)
            key = hashlib.sha1(key).digest()
        block = key.ljust(64, b"\0")
        self._inner = hashlib.sha1(bytes(byte ^ 0x36 for byte in block))
        self._outer = hashlib.sha1(bytes(byte ^ 0x5C for byte in block))

    def __call__(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


def _b64(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def _unb64(part: str) -> bytes | None:
    """The bytes ``part`` encodes, if ``part`` is exactly how :func:`_b64` encodes them."""
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        return None
    return raw if _b64(raw) == part.encode("ascii") else None


@dataclass(frozen=True)
class Claim:
    """The token a request brought and how it travelled; verified only if the session is used."""

    token: str | None
    via_header: bool
    signer: TokenSigner | None = None
    idempotency_key: str | None = None
    """The request's ``Idempotency-Key`` header: the key of its first turn."""

    def verified_id(self) -> str | None:
        if self.token is None or self.signer is None:
            return None
        return self.signer.unsign(self.token)


class SessionIds:
    """Reads the claimed id from a request and writes the id back on the response.

    The id goes back the way it came: in the header to a client that sent the header (an API
    client starts with any value, e.g. ``X-Agent-Session: new``), otherwise in the cookie.
    Browsers never get it in a header, where page scripts could read what ``HttpOnly`` hides.
    """

    def __init__(self, secret_key: SecretKey, config: IdConfig) -> None:
        self.config = config
        self.signer = TokenSigner(secret_key, config.max_age)

    def claim(
        self,
        header_value: str | None,
        cookie_header: str | None,
        idempotency_key: str | None = None,
    ) -> Claim:
        # the signature is checked on the session's first use: a request that never uses its
        # session pays for finding the token and nothing else
        if header_value is not None:
            return Claim(header_value.strip(), True, self.signer, idempotency_key)
        token = cookie_value(cookie_header, self.config.cookie_name)
        return Claim(token, False, self.signer, idempotency_key)

    def response_headers(self, session: AsyncRequestSession, https: bool) -> list[tuple[str, str]]:
        """Headers that hand the client its id; none unless the session was used."""
        if not session.needs_headers:
            return []
        outgoing = session.outgoing_id
        if outgoing is not None:
            token = self.signer.sign(outgoing)  # re-signed: the expiry slides with use
            if session.via_header:
                return [(self.config.header_name, token)]
            return [("Set-Cookie", self.config.set_cookie(token, https))]
        if session.deleted and not session.via_header:
            return [("Set-Cookie", self.config.expire_cookie(https))]
        return []
