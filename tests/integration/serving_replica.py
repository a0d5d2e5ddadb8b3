"""A stand-in model server for serving tests: standard library only, starts in a blink.

    serving_replica.py SERVICE_MS

Serves on 127.0.0.1:$SLICEBOX_SERVICE_PORT. ``GET /health`` answers 200; ``POST`` (any
path) takes SERVICE_MS milliseconds, one request at a time (a lock: one replica is one
server with a fixed capacity, ~1000/SERVICE_MS requests per second, as a model on its
own slice is), and answers ``{"replica": <port>}``. Sleeping, not computing, so its
capacity does not depend on how busy the test machine is.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SERVICE_S = float(sys.argv[1]) / 1000.0
PORT = int(os.environ["SLICEBOX_SERVICE_PORT"])
ONE_AT_A_TIME = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the balancer's client expects

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's naming
        self._answer(200 if self.path == "/health" else 404, {"ok": self.path == "/health"})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        with ONE_AT_A_TIME:
            time.sleep(SERVICE_S)
        self._answer(200, {"replica": PORT})

    def _answer(self, status: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: object) -> None:  # quiet: the job log stays small
        pass


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    server.daemon_threads = True
    print(f"serving on {PORT}", flush=True)
    server.serve_forever()
