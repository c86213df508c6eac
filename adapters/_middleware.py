"""The options the ASGI and WSGI middlewares share, and what they build from them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from ._errors import check_busy_status
from ._tokens import COOKIE_NAME, HEADER_NAME, MAX_AGE, IdConfig, SecretKey, SessionIds, TokenSigner

AppT = TypeVar("AppT")
ManagerT = TypeVar("ManagerT")
RequestT = TypeVar("RequestT")


class Middleware(Generic[AppT, ManagerT, RequestT]):
    """Base of ``AgentSessionMiddleware`` and ``AgentSessionWSGIMiddleware``."""

    def __init__(
        self,
        app: AppT,
        manager: ManagerT,
        *,
        secret_key: SecretKey,
        cookie_name: str = COOKIE_NAME,
        header_name: str = HEADER_NAME,
        max_age: int | None = MAX_AGE,
        cookie_path: str = "/",
        cookie_domain: str | None = None,
        cookie_secure: bool | None = None,
        cookie_samesite: str = "lax",
        owner: Callable[[RequestT], str | None] | None = None,
        busy_status: int = 409,
    ) -> None:
        self.app = app
        self.manager = manager
        config = IdConfig(
            cookie_name, header_name, max_age, cookie_path, cookie_domain, cookie_secure,
            cookie_samesite,
        )  # fmt: skip
        self.ids = SessionIds(secret_key, config)
        self.owner = owner
        self.busy_status = check_busy_status(busy_status)
        self._installed()

    def _installed(self) -> None:
        """What an adapter sets up once its options are read."""

    @property
    def signer(self) -> TokenSigner:
        return self.ids.signer
