"""Encryption at rest: message and metadata records sealed with Fernet (``cryptography``).

    store = open_store("sqlite:///agentsession.db", encryption_keys=[new_key, old_key])

The first key encrypts; every key decrypts, so rotating is: put the new key first, keep the
old ones until ``agentsession migrate`` has nothing left to read with them. Make a key with
``cryptography.fernet.Fernet.generate_key()``. A sealed record is a small JSON envelope that
keeps its own schema version: ``{"v": 1, "enc": "fernet", "data": "..."}``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import ConfigurationError, DecryptionError, MissingDependency
from ..messages import Message
from .base import ENVELOPE_VERSION, RecordCodec

try:
    from cryptography.fernet import Fernet, InvalidToken, MultiFernet
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise MissingDependency("cryptography", "encryption", "Encryption at rest") from exc


def _fernet(key: str | bytes, position: int) -> Fernet:
    try:
        return Fernet(key)
    except (ValueError, TypeError):  # the message must not echo the key
        raise ConfigurationError(
            f"encryption key #{position + 1} is not a Fernet key (32 url-safe base64-encoded "
            "bytes); make one with cryptography.fernet.Fernet.generate_key()"
        ) from None


class EncryptedCodec(RecordCodec):
    """Seals each record with the first key; opens it with whichever key fits."""

    sealed = True

    def __init__(self, keys: Sequence[str | bytes]) -> None:
        if isinstance(keys, (str, bytes)) or not keys:
            raise ConfigurationError(
                "encryption_keys must be a non-empty list of Fernet keys, the newest first"
            )
        self._fernet = MultiFernet([_fernet(key, i) for i, key in enumerate(keys)])

    def _seal(self, text: str) -> str:
        data = self._fernet.encrypt(text.encode("utf-8")).decode("ascii")
        return json.dumps({"v": ENVELOPE_VERSION, "enc": "fernet", "data": data})

    def _open(self, record: Mapping[str, Any], session_id: str) -> str:
        try:
            return self._fernet.decrypt(str(record["data"]).encode("ascii")).decode("utf-8")
        except (InvalidToken, KeyError, UnicodeError) as exc:
            raise DecryptionError(
                f"session {session_id!r}: a record cannot be decrypted with any configured key "
                "(wrong key, or the key it was written with was removed)"
            ) from exc

    def dump_message(self, message: Message) -> str:
        return self._seal(message.to_json())

    def dump_metadata(self, metadata: Mapping[str, Any]) -> str:
        return self._seal(super().dump_metadata(metadata))

    def dump_event(self, event: Mapping[str, Any]) -> str:
        return self._seal(super().dump_event(event))

    def decode_sealed(self, record: Mapping[str, Any], session_id: str) -> str:
        return self._open(record, session_id)
