"""A headless Chromium page through Playwright, driving the system's Chromium
(Debian's /usr/bin/chromium, installed by scripts/setup_browser.sh): Playwright
downloads nothing here (no `playwright install`).

    with headless_page(width=1200, height=800) as session:
        session.page.goto("http://127.0.0.1:8090/")

Every browser gets a fresh temporary profile (--user-data-dir) that is removed
afterwards; on leaving, the browser is closed, and any process still running
with that profile (only ours can) is killed, so nothing outlives the block.
"""

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass

import psutil
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, sync_playwright

from fizbuz import settings
from fizbuz.lifecycle import end_family
from fizbuz.errors import FizbuzError

CHROMIUM = str(settings.value("chromium"))
LAUNCH_TIMEOUT_MS = 60_000

# We run as root on machines without outside network: no sandbox (root), no
# GPU, none of the background calls home that would wait on DNS/QUIC, and only
# loopback resolves, so a page cannot reach (or wait on) the outside.
FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--no-proxy-server",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
)


class BrowserError(FizbuzError):
    pass


@dataclass
class Session:
    page: Page
    profile: str  # the temporary --user-data-dir
    pid: int | None  # the browser's main process


def processes_using(profile):
    """The running processes whose command line names `profile` (a unique temp dir)."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(profile in word for word in process.info["cmdline"] or []):
            found.append(process)
    return found


def main_process(profile):
    """The browser process itself: the one of `profile`'s processes not started by another."""
    family = processes_using(profile)
    pids = {process.pid for process in family}
    roots = [process for process in family if process.ppid() not in pids]
    return roots[0].pid if roots else None


@contextlib.contextmanager
def headless_page(width=1280, height=800, scale=1, binary=CHROMIUM):
    """A Session with one page of the given viewport; `scale` is the device pixel ratio."""
    if not os.access(binary, os.X_OK):
        raise BrowserError(f"no Chromium at {binary}: run scripts/setup_browser.sh")
    profile = tempfile.mkdtemp(prefix="fizbuz-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=binary,
                headless=True,
                args=list(FLAGS),
                viewport={"width": width, "height": height},
                device_scale_factor=scale,
                timeout=LAUNCH_TIMEOUT_MS,
            )
            try:
                page = context.pages[0] if context.pages else context.new_page()
                yield Session(page, profile, main_process(profile))
            finally:
                context.close()
    except PlaywrightError as error:
        raise BrowserError(str(error)) from error
    finally:
        for process in processes_using(profile):  # what close() left behind, if anything
            end_family(process, grace=0)
        shutil.rmtree(profile, ignore_errors=True)
