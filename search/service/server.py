"""Running the app under uvicorn: in the foreground (``groundzero serve``) or in a background
thread (tests, benchmarks), always on a socket bound first, so port 0 gives a known free port.

:func:`share_cores` splits the CPUs between the searches that run at once (``groundzero serve``
calls it before loading the model; it sets torch's process-wide thread count)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable

import uvicorn
from starlette.types import ASGIApp


def share_cores(searches_at_once: int, cpus: int | None = None) -> int:
    """Set torch's intra-op threads to the CPUs' share of each of ``searches_at_once`` searches (at least
    one), so parallel searches never run more torch threads than there are cores; left as it is when
    ``OMP_NUM_THREADS`` is set. ``cpus`` default: those this process may run on. Returns torch's
    thread count."""
    import torch

    from groundzero.search.service.media import cpu_count

    if not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(max(1, (cpus or cpu_count()) // max(1, searches_at_once)))
    return torch.get_num_threads()


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this. Without it a response sent as two writes (headers,
    # then body) waits out the client's delayed ACK: +40 ms on every request, measured.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.setblocking(False)
    return sock


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


def _server(app: ASGIApp, log_level: str) -> uvicorn.Server:
    return uvicorn.Server(uvicorn.Config(app, log_level=log_level, access_log=log_level in ("debug", "info"),
                                         timeout_graceful_shutdown=3, lifespan="off"))


def serve_forever(app: ASGIApp, host: str, port: int, on_ready: Callable[[str], None],
                  log_level: str = "warning") -> None:
    """Bind, call ``on_ready(url)``, then serve until interrupted (Ctrl-C / SIGTERM)."""
    sock = bind(host, port)
    on_ready(url_of(sock))
    _server(app, log_level).run(sockets=[sock])


class BackgroundServer:
    """``with BackgroundServer(app) as url:`` serves ``app`` on a free loopback port in a thread."""

    def __init__(self, app: ASGIApp, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning"):
        self.app, self.host, self.port, self.log_level = app, host, port, log_level
        self.url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 30.0) -> str:
        sock = bind(self.host, self.port)
        self.url = url_of(sock)
        self._server = _server(self.app, self.log_level)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name="gz-uvicorn", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server at {self.url} did not start")
            time.sleep(0.02)
        return self.url

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
