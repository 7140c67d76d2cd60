"""A real HTTP reverse proxy on 127.0.0.1 in front of an S3 endpoint that injects transient errors.

It answers ``503 SlowDown`` (what S3 says when it throttles) to the first GET and the first PUT of every path,
then forwards every request unchanged to the upstream server (moto's S3 server in the tests). It counts
what it injected and the body bytes it served per path, so a test can prove that failures really happened
and how much of an object was read.
"""

from __future__ import annotations

import http.client
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

SLOW_DOWN = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
             b"<Message>Please reduce your request rate.</Message></Error>")
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}
INJECT_METHODS = ("GET", "PUT")


class FaultInjectingS3Proxy:
    """``with FaultInjectingS3Proxy(upstream) as proxy:`` -> ``proxy.url``, ``proxy.injected``, ``proxy.served``."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname, parts.port)
        self.injected: Counter[tuple[str, str]] = Counter()  # (method, path) -> 503s answered
        self.served: Counter[str] = Counter()                  # path -> body bytes of successful GETs
        self.forwarded = 0
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FaultInjectingS3Proxy:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _first_time(self, method: str, path: str) -> bool:
        """True (and counted as injected) for the first GET/PUT of ``path``."""
        if method not in INJECT_METHODS:
            return False
        with self._lock:
            if (method, path) in self._seen:
                return False
            self._seen.add((method, path))
            self.injected[(method, path)] += 1
            return True

    def _handler_class(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                        if size == 0:
                            return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _handle(self) -> None:
                body = self._body()
                path = urlsplit(self.path).path
                if proxy._first_time(self.command, path):
                    self.send_response(503)
                    self.send_header("Content-Type", "application/xml")
                    self.send_header("Content-Length", str(len(SLOW_DOWN)))
                    self.end_headers()
                    self.wfile.write(SLOW_DOWN)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                if body or self.command in ("PUT", "POST"):
                    headers["Content-Length"] = str(len(body))
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    conn.request(self.command, self.path, body=body or None, headers=headers)
                    resp = conn.getresponse()
                    data = resp.read()
                    out_headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP]
                finally:
                    conn.close()
                with proxy._lock:
                    proxy.forwarded += 1
                    if self.command == "GET" and resp.status < 300:
                        proxy.served[path] += len(data)
                self.send_response(resp.status)
                for k, v in out_headers:
                    if self.command == "HEAD" or k.lower() != "content-length":
                        self.send_header(k, v)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        return Handler
