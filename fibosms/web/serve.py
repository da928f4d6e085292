"""Run the API under uvicorn: one process, or several (``--workers``) sharing one socket.

uvicorn's own access log is off: it prints the raw path and query string, which may hold a
phone number; the app's access log (:mod:`fibosms.web.middleware`) names the route's
template instead. Timeouts keep a slow or idle client from holding a server: idle
keep-alive connections close after :data:`KEEP_ALIVE_SECONDS`, a body must arrive within
the body limit's timeout, and a stopping server waits :data:`GRACEFUL_SECONDS` at most.
"""

from __future__ import annotations

#: seconds an idle keep-alive connection is kept
KEEP_ALIVE_SECONDS = 5
#: seconds a stopping server lets requests in progress finish
GRACEFUL_SECONDS = 30
#: connections one process serves at once; past it new ones get 503
MAX_CONCURRENCY = 1000
#: the factory uvicorn calls in each process
APP = "fibosms.web.app:create_app"


def serve(
    *, host: str, port: int, workers: int = 1, forwarded_allow_ips: str = "127.0.0.1"
) -> None:
    """Serve until stopped (SIGINT/SIGTERM). Nothing connects before a process starts."""
    import uvicorn

    uvicorn.run(
        APP,
        factory=True,
        host=host,
        port=port,
        workers=workers,
        access_log=False,
        log_config=None,
        proxy_headers=True,
        forwarded_allow_ips=forwarded_allow_ips,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        timeout_graceful_shutdown=GRACEFUL_SECONDS,
        limit_concurrency=MAX_CONCURRENCY,
        server_header=False,
    )
