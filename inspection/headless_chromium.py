"""A headless Chromium driven over the DevTools protocol on a pipe.

Chromium's --remote-debugging-pipe speaks the DevTools protocol as
NUL-terminated JSON messages on file descriptors 3 (commands in) and 4
(replies and events out), so the standard library is enough: no websocket
client, no chromium-driver, no browser package to pin, no port to pick.

    with HeadlessChromium() as browser:
        page = browser.open_page(width=1200, height=800)
        page.navigate("http://127.0.0.1:8090/")
        page.wait_for(expression, deadline=30)
        png = page.screenshot()

Every browser runs with a fresh temporary --user-data-dir that is removed
afterwards. On exit it is asked to close, then its process group (led by its
PID) is killed so no helper process outlives it.
"""

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time

DEFAULT_BINARY = os.environ.get("CHROMIUM", "/usr/bin/chromium")

# What Chromium needs to run as root on a machine without outside network:
# no sandbox (root), no GPU, and none of the background calls home that would
# otherwise wait on DNS/QUIC.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-quic",
    # Only loopback resolves, so a page cannot reach (or wait on) the outside.
    "--no-proxy-server",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
    "--hide-scrollbars",
    "--mute-audio",
    "--remote-debugging-pipe",
)


class BrowserError(RuntimeError):
    pass


class HeadlessChromium:
    def __init__(self, binary=DEFAULT_BINARY, reply_timeout=30):
        self.binary = binary
        self.reply_timeout = reply_timeout
        self.process = None
        self.profile = None
        self.stderr_path = None
        self._next_id = 0
        self._buffer = b""
        self._events = []
        self._writer = self._reader = None

    # -- life cycle ---------------------------------------------------------

    def start(self):
        if not os.access(self.binary, os.X_OK):
            raise BrowserError(f"no Chromium at {self.binary}: run scripts/setup_browser.sh")
        self.profile = tempfile.mkdtemp(prefix="fizbuz-chromium-")
        self.stderr_path = os.path.join(self.profile, "chromium.log")
        # Our ends: we write commands to to_browser_w, read replies from from_browser_r.
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()
        # The browser must find its ends at exactly fds 3 and 4. bash moves them
        # there just before exec (so the PID stays the browser's); first lift them
        # above 9 so that moving one can never overwrite the other.
        child_in = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD_CLOEXEC, 10)
        child_out = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD_CLOEXEC, 10)
        trampoline = f'exec "$0" "$@" 3<&{child_in} 4>&{child_out}'
        command = [self.binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"]
        with open(self.stderr_path, "wb") as log:
            self.process = subprocess.Popen(
                ["bash", "-c", trampoline, *command],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                pass_fds=(child_in, child_out), start_new_session=True)
        for fd in (to_browser_r, from_browser_w, child_in, child_out):
            os.close(fd)
        self._writer = to_browser_w
        self._reader = from_browser_r
        return self

    def stop(self):
        """Close the browser politely, then make sure no process of its group is left."""
        if self.process is not None:
            if self.process.poll() is None:
                try:
                    self.send("Browser.close", timeout=5)
                except (BrowserError, OSError):
                    pass  # it may close the pipe before replying; the PID decides below
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
            # start_new_session made the browser a group leader whose group holds
            # its renderer and utility processes: one signal by that PID ends any left.
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(timeout=10)
        for fd in (self._writer, self._reader):
            if fd is not None:
                os.close(fd)
        self._writer = self._reader = None
        if self.profile:
            shutil.rmtree(self.profile, ignore_errors=True)
            self.profile = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def log_tail(self, lines=20):
        try:
            with open(self.stderr_path, encoding="utf-8", errors="replace") as log:
                return "".join(log.readlines()[-lines:])
        except (OSError, TypeError):
            return ""

    # -- protocol -----------------------------------------------------------

    def forget_events(self):
        self._events.clear()

    def wait_event(self, method, session_id, timeout=None):
        """The params of the next event called method from session_id (kept or new)."""
        deadline = time.monotonic() + (timeout or self.reply_timeout)
        while True:
            for event in self._events:
                if event.get("method") == method and event.get("sessionId") == session_id:
                    self._events.remove(event)
                    return event.get("params", {})
            self._events.append(self._read_message(deadline, method))

    def send(self, method, params=None, session_id=None, timeout=None):
        """Send one command and return its result (events that arrive meanwhile are kept)."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session_id:
            message["sessionId"] = session_id
        os.write(self._writer, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + (timeout or self.reply_timeout)
        while True:
            reply = self._read_message(deadline, method)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method} failed: {reply['error']}")
                return reply.get("result", {})
            self._events.append(reply)

    def _read_message(self, deadline, waiting_for):
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"no reply to {waiting_for} in time\n{self.log_tail()}")
            ready, _, _ = select.select([self._reader], [], [], left)
            if ready:
                chunk = os.read(self._reader, 1 << 20)
                if not chunk:
                    raise BrowserError(f"Chromium closed the pipe (exit code "
                                       f"{self.process.poll()})\n{self.log_tail()}")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def open_page(self, width=1280, height=800):
        """A new tab of the given viewport size, attached for commands."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget",
                            {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        page.send("Page.enable")  # for the load event navigate() waits for
        page.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        return page


class Page:
    def __init__(self, browser, session_id):
        self.browser = browser
        self.session_id = session_id

    def send(self, method, params=None, timeout=None):
        return self.browser.send(method, params, session_id=self.session_id, timeout=timeout)

    def navigate(self, url, timeout=None):
        """Load url and return once its load event has fired."""
        self.browser.forget_events()  # a load event from an earlier page must not count
        result = self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise BrowserError(f"cannot load {url}: {result['errorText']}")
        self.browser.wait_event("Page.loadEventFired", self.session_id, timeout)

    def evaluate(self, expression):
        """The JSON value of a JavaScript expression in the page."""
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise BrowserError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait_for(self, expression, deadline_seconds, poll_seconds=0.25):
        """Evaluate expression until it is truthy; the last value on time-out.

        Polling the page itself is the readiness check: the graph is drawn by
        JavaScript after the model has been fetched and parsed.
        """
        deadline = time.monotonic() + deadline_seconds
        while True:
            value = self.evaluate(expression)
            if value or time.monotonic() >= deadline:
                return value
            # A pause between polls, not a readiness guess: we only stop on a truthy value.
            time.sleep(poll_seconds)

    def screenshot(self, clip=None):
        """PNG bytes of the viewport, or of clip ({x, y, width, height, scale})."""
        params = {"format": "png"}
        if clip:
            params["clip"] = clip
        return base64.b64decode(self.send("Page.captureScreenshot", params)["data"])
