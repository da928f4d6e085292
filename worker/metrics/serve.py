"""Serving a registry over HTTP (Prometheus text format on any path, ``/metrics`` by habit)."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_wsgi_server
from prometheus_client.registry import Collector


def serve_in_thread(registry: Collector, *, host: str, port: int) -> WSGIServer:
    """Serve ``registry`` from a daemon thread; port 0 picks a free one (``server_port``)."""
    server, _thread = start_wsgi_server(port, addr=host, registry=registry)
    return server


def serve_until_stopped(server: WSGIServer) -> None:
    """Block until SIGTERM or Ctrl-C, then stop ``server``."""
    stop = threading.Event()

    def on_term(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        server.shutdown()
        server.server_close()
