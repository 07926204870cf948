"""Running the API with uvicorn: in the foreground (``flow-assets serve``) or in a thread."""

from __future__ import annotations

import logging
import socket
import threading
import time
from types import TracebackType

import uvicorn
from fastapi import FastAPI

log = logging.getLogger("flow_assets.api")
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _config(app: FastAPI, host: str, port: int) -> uvicorn.Config:
    # Our own access log names the key; uvicorn's would print every file link's token.
    return uvicorn.Config(
        app, host=host, port=port, access_log=False, log_config=None, server_header=False
    )


def serve(app: FastAPI, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve ``app`` until interrupted (Ctrl-C / SIGTERM stop it cleanly)."""
    if host not in LOOPBACK:
        log.warning("serving on %s: reachable from other machines (put TLS in front of it)", host)
    uvicorn.Server(_config(app, host, port)).run()


class ServerThread:
    """The app served on ``host`` at a free port in a background thread, for tests and benchmarks::

    with ServerThread(app) as server:
        requests.get(f"{server.url}/api/v1/openapi.json")
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app, self.host, self.port = app, host, port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server."""
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> ServerThread:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        self._server = uvicorn.Server(_config(self.app, self.host, self.port))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True, name="api-server"
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the API server did not start")
            time.sleep(0.01)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        assert self._thread is not None
        self._server.should_exit = True
        self._thread.join(timeout=10)
