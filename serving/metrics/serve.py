"""Serve a Prometheus registry until SIGTERM or SIGINT, doing the exporter's
own work in between: the one main-loop shape of both exporters."""

import logging
import signal
import threading

from prometheus_client import start_http_server


def serve_until_signalled(registry, address, port, step, poll_interval, log: logging.Logger, source):
    """Serve /metrics on address:port; call step() until signalled. step()
    returns True when it did work (call again at once), False when idle (wait
    poll_interval first). The HTTP server is stopped however the loop ends."""
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    server, _thread = start_http_server(port, addr=address, registry=registry)
    log.info("serving metrics on http://%s:%d/metrics from %s", address, port, source)
    try:
        while not stopping.is_set():
            if not step():
                stopping.wait(poll_interval)
    finally:
        server.shutdown()
        server.server_close()
