"""The offline model behind an OpenAI-compatible HTTP endpoint, for any OpenAI client.

    from openai import OpenAI

    from agentsession.offline.openai_server import OfflineOpenAIServer

    with OfflineOpenAIServer() as server:  # 127.0.0.1, a free port
        client = OpenAI(base_url=server.base_url, api_key="offline")
        reply = client.chat.completions.create(
            model="any", messages=[{"role": "user", "content": "hi"}]
        )
        reply.choices[0].message.content  # "I have seen 1 user message. You said: 'hi'"

It serves ``POST /v1/chat/completions`` (not streamed) from a daemon thread with the standard
library only, and answers as :func:`agentsession.offline.compose_reply` does: ``/tool NAME
{"json": "args"}`` returns a tool call, a speaker-selection prompt returns one name. Point a
real provider's ``llm_config`` or client at ``base_url`` to run it offline.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast

from ._openai import MODEL, answer, assistant_message

logger = logging.getLogger("agentsession.offline")

COMPLETIONS_PATH = "/v1/chat/completions"


class OfflineOpenAIServer:
    """An OpenAI-compatible chat-completions server answering with the offline model.

    ``OfflineOpenAIServer()`` binds 127.0.0.1 on a free port (``port=0``); ``start()`` serves
    from a daemon thread (entering the ``with`` block starts it), ``close()`` stops it and frees
    the port. ``base_url`` (``http://127.0.0.1:PORT/v1``) is what an OpenAI client needs; any
    API key is accepted. ``completions`` counts the completions served.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.completions = 0
        self._lock = threading.Lock()
        self._httpd = _HTTPServer((host, port), self)
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """The OpenAI ``base_url``: ``http://HOST:PORT/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> OfflineOpenAIServer:
        """Serve from a daemon thread; returns the server, so ``OfflineOpenAIServer().start()``.
        A closed server does not start again: make a new one."""
        if self._closed:
            raise RuntimeError(f"{self!r} is closed; start a new OfflineOpenAIServer")
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                name=f"agentsession-offline-openai-{self.port}",
                daemon=True,
            )
            self._thread.start()
            logger.debug("offline OpenAI server listening on %s", self.base_url)
        return self

    def close(self) -> None:
        """Stop serving, end the open connections and free the port; closing twice is
        harmless."""
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._closed = True
        self._httpd.server_close()
        self._httpd.end_connections()  # a kept-alive client connection is not served on

    def __enter__(self) -> OfflineOpenAIServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OfflineOpenAIServer({self.base_url!r})"

    def complete(self, request: dict[str, Any]) -> dict[str, Any]:
        """The ``chat.completion`` for a chat-completions request body (already parsed)."""
        reply = answer(request)
        message = assistant_message(reply)
        with self._lock:
            self.completions += 1
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(request.get("model") or MODEL),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if reply.tool_call is not None else "stop",
                }
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }


class _HTTPServer(ThreadingHTTPServer):
    """Serves each connection from a daemon thread and remembers the open ones."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], offline: OfflineOpenAIServer) -> None:
        super().__init__(address, _Handler)
        self.offline = offline
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def end_connections(self) -> None:
        with self._connections_lock:
            live = list(self._connections)
        for connection in live:
            with contextlib.suppress(OSError):  # already gone
                connection.shutdown(socket.SHUT_RDWR)


class _BadRequest(ValueError):
    pass


class _Handler(BaseHTTPRequestHandler):
    server_version = "agentsession-offline"
    protocol_version = "HTTP/1.1"  # keep-alive, as OpenAI clients expect

    def do_POST(self) -> None:
        path = self.path.partition("?")[0].rstrip("/")
        if path != COMPLETIONS_PATH:
            self._drain()
            self._error(404, f"no such endpoint: POST {path}; use POST {COMPLETIONS_PATH}")
            return
        try:
            request = self._request()
        except _BadRequest as problem:
            self._error(400, str(problem))
            return
        try:
            body = cast(_HTTPServer, self.server).offline.complete(request)
        except Exception as error:  # a message the translation cannot read
            logger.warning("offline OpenAI server could not answer: %r", error)
            self._error(400, f"the messages could not be read: {error!r}")
            return
        self._send(200, body)

    def do_GET(self) -> None:
        self._error(404, f"no such endpoint: GET {self.path}; use POST {COMPLETIONS_PATH}")

    do_PUT = do_DELETE = do_PATCH = do_GET

    def _request(self) -> dict[str, Any]:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise _BadRequest("Content-Length is not a number") from None
        raw = self.rfile.read(length) if length > 0 else b""
        try:
            request = json.loads(raw)
        except ValueError:
            raise _BadRequest("the request body is not JSON") from None
        if not isinstance(request, dict):
            raise _BadRequest("the request body must be a JSON object")
        if request.get("stream"):
            raise _BadRequest("streaming is not supported: send 'stream': false")
        messages = request.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise _BadRequest("'messages' must be a list of message objects")
        tools = request.get("tools")
        if tools is not None and (
            not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools)
        ):
            raise _BadRequest("'tools' must be a list of tool objects")
        return request

    def _drain(self) -> None:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if length > 0:
            self.rfile.read(length)

    def _error(self, status: int, message: str) -> None:
        self.close_connection = True  # whatever is left of the request is not read
        kind = "invalid_request_error" if status == 400 else "not_found_error"
        self._send(
            status, {"error": {"message": message, "type": kind, "param": None, "code": None}}
        )

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("offline OpenAI server: " + format, *args)


__all__ = ["COMPLETIONS_PATH", "OfflineOpenAIServer"]
