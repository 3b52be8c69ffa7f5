"""A fault-injecting HTTP proxy in front of a moto S3 server, for tests.

Every request is forwarded to moto unchanged, except those matching an
injected :class:`Fault`, which get an S3 error answer instead (by default
``503 SlowDown``, S3's throttling answer) for their first ``times`` matches.
Being a real HTTP server on loopback, it reaches every process — the test
driver and Ray's worker processes alike — through the endpoint URL, which a
botocore event hook living in one process could not. ``log`` records every
request as ``(method, path, status)``.
"""

from __future__ import annotations

import http.client
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


@dataclass
class Fault:
    method: str  #: "GET", "PUT", "HEAD", ... or "*"
    path: str  #: regex searched in the request path (with its query string)
    status: int = 503
    code: str = "SlowDown"
    times: int = 1  #: matching requests answered with the error; -1: all of them
    served: int = 0

    def take(self, method: str, path: str) -> bool:
        if self.method not in ("*", method) or not re.search(self.path, path):
            return False
        if self.times >= 0 and self.served >= self.times:
            return False
        self.served += 1
        return True


class FaultProxy:
    def __init__(self, upstream: str):
        u = urlsplit(upstream)
        self.upstream = (u.hostname, u.port)
        self.faults: list[Fault] = []
        self.log: list[tuple[str, str, int]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def inject(self, method: str, path: str, status: int = 503, code: str = "SlowDown", times: int = 1) -> Fault:
        f = Fault(method, path, status, code, times)
        with self._lock:
            self.faults.append(f)
        return f

    def clear(self) -> None:
        with self._lock:
            self.faults.clear()
            self.log.clear()

    def requests(self, method: str, path: str) -> list[tuple[str, str, int]]:
        return [r for r in self.log if r[0] == method and re.search(path, r[1])]

    def _fault_for(self, method: str, path: str) -> Fault | None:
        with self._lock:
            return next((f for f in self.faults if f.take(method, path)), None)


def _handler(proxy: FaultProxy):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                out = b""
                while True:
                    size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return out
                    out += self.rfile.read(size)
                    self.rfile.readline()
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def _handle(self) -> None:
            body = self._body()
            fault = proxy._fault_for(self.command, self.path)
            if fault is not None:
                xml = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{fault.code}</Code>'
                       f"<Message>injected by the test proxy</Message><RequestId>fault</RequestId></Error>").encode()
                # logged before answering: the client may look at the log as soon as it has the answer
                proxy.log.append((self.command, self.path, fault.status))
                self.send_response(fault.status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(xml)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(xml)
                return
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("transfer-encoding", "connection")}
            if body or self.headers.get("Content-Length") is not None or self.headers.get("Transfer-Encoding"):
                headers["Content-Length"] = str(len(body))
            conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
            try:
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                proxy.log.append((self.command, self.path, resp.status))  # before answering (see above)
                self.send_response(resp.status, resp.reason)
                for k, v in resp.getheaders():
                    if k.lower() in ("transfer-encoding", "connection", "content-length", "server", "date"):
                        continue
                    self.send_header(k, v)
                length = resp.getheader("Content-Length") if self.command == "HEAD" else str(len(data))
                self.send_header("Content-Length", length or "0")
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
            finally:
                conn.close()

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

    return Handler
