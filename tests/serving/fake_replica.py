"""A stand-in replica for the balancer's tests: standard library only, so it starts in a
fraction of a second (the real model server imports torch).

``python tests/serving/fake_replica.py PORT NAME [DELAY_MS]``: ``GET /health`` answers
200 (503 once the file ``<NAME>.sick`` exists in ``$FAKE_REPLICA_DIR``), ``POST``
anything answers ``{"replica": NAME}`` after DELAY_MS (``POST /status/N`` answers status N).
"""

from __future__ import annotations

import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def main() -> None:
    port, name = int(sys.argv[1]), sys.argv[2]
    delay = float(sys.argv[3]) / 1000.0 if len(sys.argv) > 3 else 0.0
    sick = Path(os.environ.get("FAKE_REPLICA_DIR", ".")) / f"{name}.sick"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _send(self, status: int, payload: dict[str, str]) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            if sick.exists():
                self._send(503, {"status": "sick"})
            else:
                self._send(200, {"status": "ok", "replica": name})

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("content-length") or 0)
            received = self.rfile.read(length)
            time.sleep(delay)
            status = int(self.path.rsplit("/", 1)[1]) if self.path.startswith("/status/") else 200
            self._send(status, {"replica": name, "echo": received.decode()[:100],
                             "path": self.path})

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
