"""A small aiohttp server in a thread, on a free loopback port (or the address
and port given), stopped on
leaving: the stand-in the load tools' unit tests point their generators at.
A test subclasses it and says what it serves in `routes`."""

import asyncio
import threading

from aiohttp import web

from fizbuz.lifecycle import free_port


class StubServer:
    def __init__(self, host="127.0.0.1", port=None):
        self.host = host
        self.port = port or free_port()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def routes(self, app: web.Application) -> None:
        """Add this stub's handlers to `app`."""
        raise NotImplementedError

    async def _start(self):
        app = web.Application()
        self.routes(app)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.host, self.port).start()

    def __enter__(self):
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=30)
        return self

    def __exit__(self, *exc):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        self.loop.close()
