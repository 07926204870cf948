"""A local stand-in for the exchanges' instrument metadata, for tests and the demo.

:class:`CatalogServer` serves every venue's document on ``127.0.0.1`` (a free port), each
through its venue's own routing (its catalog reader's ``answer``; the builders of each venue's
exact JSON shape are in its module, :mod:`flow_assets.venues`), and lets a test swap a snapshot
(a changed contract value, a new listing, a delisting) or queue faults (an HTTP status, a raw
body, a delay).
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from flow_assets.loopback import LoopbackServer


def ms(at: datetime) -> int:
    """Epoch milliseconds of a zone-aware datetime."""
    return round(at.timestamp() * 1000)


class CatalogServer(LoopbackServer):
    """Every venue's metadata endpoints on 127.0.0.1 (free port); a context manager.

    ``documents`` maps a venue to the document it serves now (assign to swap a snapshot; a
    venue without one answers 404); each venue's own routing, parameters and pagination are its
    catalog reader's ``answer`` (:mod:`flow_assets.venues`). ``inject(path, *faults)`` queues
    faults for a URL path; ``log`` lists ``(path, query, status)`` of every request.
    """

    def __init__(self, documents: dict[str, Any] | None = None) -> None:
        self.documents: dict[str, Any] = dict(documents or {})
        super().__init__()

    def answer(self, path: str, query: dict[str, list[str]]) -> tuple[int, object]:
        """Status and JSON document for a request: the first venue whose routing knows it."""
        from flow_assets.venues import VENUES  # noqa: PLC0415 (the venues import this module)

        for name, document in self.documents.items():
            if document is not None:
                status, body = VENUES[name].catalog.answer(path, query, document)
                if status != 404:
                    return status, body
        return 404, {"msg": "Not Found", "code": 404}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            wbufsize = 1 << 16  # headers and body in one send (unbuffered: 40 ms delayed ACKs)

            def log_message(self, format: str, *args: object) -> None:
                return

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                fault = server._next_fault(parts.path)
                if fault and fault.delay:
                    time.sleep(fault.delay)
                if fault and fault.status:
                    status, body = fault.status, b'{"msg":"injected"}'
                elif fault and fault.body is not None:
                    status, body = 200, fault.body
                else:
                    status, document = server.answer(parts.path, parse_qs(parts.query))
                    body = json.dumps(document).encode()
                server.log.append((parts.path, parts.query, status))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler
