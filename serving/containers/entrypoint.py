"""PID 1's child in the MMS image: start MMS through the project's own start
logic (serving.mms.cli: config, registration with batching, wait READY), then
stay in the foreground as long as MMS runs.

On SIGTERM (Swarm stopping or replacing the task) MMS keeps answering for
DRAIN_SECONDS first: the task is already out of Swarm's DNS, but the front
door may still hold its address for a moment, and requests on their way must
not fail. An MMS that dies on its own ends the container with status 1, so
Swarm's restart policy replaces it."""

import logging
import signal
import sys
import threading

from fizbuz.lifecycle import is_alive, tail
from serving.mms import cli
from serving.mms.process import RunFolder
from fizbuz import logs, settings

log = logging.getLogger("entrypoint")


def main():
    logs.setup("progress")
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    log.info("fizbuz MMS image %s", settings.value("image_version"))
    if cli.main(["start"]) != 0:
        return 1
    run = RunFolder(settings.value("run_dir"))
    server = run.server()
    if server is None:
        log.error("MMS is not running after start")
        return 1
    while not stopping.wait(1.0):
        if not is_alive(server):
            log.error("MMS (pid %d) exited; its log ends with:\n%s", server.pid, tail(run.logs / "mms_log.log", 30))
            return 1
    drain = settings.value("drain_seconds")
    log.info("asked to stop: serving %.0f s more for requests already on their way", drain)
    threading.Event().wait(drain)  # a fixed drain period, not a readiness guess
    return cli.main(["stop"])


if __name__ == "__main__":
    sys.exit(main())
