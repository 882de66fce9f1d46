"""Load for the metrics tools: loadtest.loadgen's answer-checking generator run
in a background thread (its run_load may be a coroutine or return directly)."""

import asyncio
import inspect
import threading

from loadtest import loadgen


class BackgroundLoad:
    """`with BackgroundLoad(port, 64, 20) as load: ...`; then load.summary."""

    def __init__(self, port, concurrency, duration):
        self.args = (port, concurrency)
        self.duration = duration
        self.result = None
        self.error = None
        self.thread = threading.Thread(target=self._run, name="load", daemon=True)

    def _run(self):
        try:
            result = loadgen.run_load(*self.args, duration=self.duration)
            self.result = asyncio.run(result) if inspect.isawaitable(result) else result
        except BaseException as error:  # noqa: BLE001  handed to the caller's thread by join()
            self.error = error

    def start(self):
        self.thread.start()
        return self

    def join(self, timeout=None):
        self.thread.join(timeout if timeout is not None else self.duration + 120)
        if self.thread.is_alive():
            raise TimeoutError("the load did not finish")
        if self.error is not None:
            raise self.error
        return self.summary

    @property
    def summary(self):
        return self.result.summary() if self.result is not None else None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.join()
