"""fibosms's entry points: the command line, the Celery app, the HTTP server."""
