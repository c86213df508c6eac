"""Signed conversation ids on the wire: the token, the cookie and the header.

A request carries a signed id in a cookie (browsers) or a header (API clients). Checking the
signature is CPU only and happens on the session's first use; a token that is forged,
tampered, expired or garbage simply verifies as nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from itsdangerous import BadData, TimestampSigner
from itsdangerous.encoding import base64_decode, base64_encode

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
    """Signs ids with a timestamp (itsdangerous, as Flask signs its session cookie)."""

    def __init__(self, secret_key: SecretKey | None, max_age: int | None) -> None:
        self._signer = TimestampSigner(secret_keys(secret_key), salt=_SALT)
        self.max_age = max_age

    def sign(self, session_id: str) -> str:
        return self._signer.sign(session_id).decode("ascii")

    def unsign(self, token: str | None) -> str | None:
        """The id in ``token``; None if it is forged, tampered, expired or garbage."""
        if not token or not _TOKEN_SHAPE.fullmatch(token):
            return None
        _, timestamp, signature = token.split(".")
        # itsdangerous decodes leniently ("==" appended, other values of the last character's
        # unused bits, non-ASCII dropped): only the one encoding it produces is accepted, so
        # one session has one token string (rate limits, logs and caches key on it)
        if not (_canonical(timestamp, integer=True) and _canonical(signature)):
            return None
        try:
            value = self._signer.unsign(token, max_age=self.max_age).decode("ascii")
        except (BadData, UnicodeError) as exc:
            # itsdangerous keeps its first error in a local of a frame that error's traceback
            # holds: a cycle that would keep the request (up the frames) alive until the
            # cyclic collector runs. Forged tokens are cheap to send; let them go at once.
            error: BaseException | None = exc
            while error is not None:
                error.__traceback__ = None
                error = error.__context__
            return None
        return value if _ID_SHAPE.fullmatch(value) else None


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


def _canonical(part: str, integer: bool = False) -> bool:
    """Is ``part`` exactly what itsdangerous encodes (a timestamp: without leading zeros)?"""
    try:
        raw = base64_decode(part)
    except BadData:
        return False
    return base64_encode(raw) == part.encode("ascii") and not (integer and raw[:1] == b"\0")


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
