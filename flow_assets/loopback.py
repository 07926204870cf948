"""A background HTTP server on 127.0.0.1 (a free port) with faults to inject: what the local
archive and catalog mirrors are built on (tests and the demo serve the exchanges' layouts)."""

from __future__ import annotations

import sys
import threading
from collections import defaultdict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


@dataclass(frozen=True)
class Fault:
    """One injected answer: an HTTP ``status`` (with ``retry_after`` seconds), a body cut to
    ``truncate`` bytes (after a full Content-Length), a replacement ``body``, or a ``delay``."""

    status: int | None = None
    retry_after: float | None = None
    truncate: int | None = None
    body: bytes | None = None
    delay: float = 0.0


class _QuietServer(ThreadingHTTPServer):
    """Clients that hang up early (timeouts, truncation tests) are not errors worth printing."""

    def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class LoopbackServer:
    """A threaded server on 127.0.0.1; a context manager. Subclasses give ``_handler()``.

    ``inject(path, *faults)`` queues faults for a URL path (each request pops one); ``log``
    lists what each subclass records of every request.
    """

    def __init__(self) -> None:
        self.faults: dict[str, deque[Fault]] = defaultdict(deque)
        self.log: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()
        self._server = _QuietServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def inject(self, path: str, *faults: Fault) -> None:
        """Queue ``faults`` for the URL path (with or without its leading ``/``)."""
        with self._lock:
            self.faults["/" + path.lstrip("/")].extend(faults)

    def _next_fault(self, path: str) -> Fault | None:
        with self._lock:
            queue = self.faults.get(path)
            return queue.popleft() if queue else None

    def start(self) -> Self:
        """Start serving in a background thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
