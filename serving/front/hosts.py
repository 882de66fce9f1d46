"""One model host of the fleet: an MMS started by the project's start_mms.sh,
inside the host's namespace, with its own run folder and model store.

The management API listens on the host's own loopback, so it is reached by
running curl inside the namespace, never over the bridge.
"""

import concurrent.futures
import http.client
import json
import logging
import os
import subprocess
import urllib.parse
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
MODEL = "fizbuz_package"
LABELS = ("Fizz", "Buzz", "FizzBuzz")

log = logging.getLogger(__name__)


class HostError(Exception):
    pass


def expected(number):
    """The right answer for input n: the label of n + 1 (kept here so the front
    door's checks need no import from the model code)."""
    nxt = number + 1
    return {"next_number": "FizzBuzz" if nxt % 15 == 0 else "Buzz" if nxt % 5 == 0
            else "Fizz" if nxt % 3 == 0 else str(nxt)}


@dataclass
class Host:
    name: str
    index: int
    address: str
    inference_port: int
    management_port: int
    run_dir: str
    namespace: str = None
    workers: int = 2
    batch_size: int = 16
    max_batch_delay: int = 1
    mar: str = f"{MODEL}.mar"      # the archive registered now (a file in model_store)
    previous_mar: str = None

    def as_dict(self):
        return asdict(self)

    @property
    def upstream(self):
        return f"{self.address}:{self.inference_port}"

    @property
    def model_store(self):
        return Path(self.run_dir) / "model_store"

    @property
    def pid_file(self):
        return Path(self.run_dir) / "tmp" / ".model_server.pid"

    def _in_namespace(self, command):
        return (["ip", "netns", "exec", self.namespace] if self.namespace else []) + command

    def _env(self):
        return dict(os.environ, FIZBUZ_RUN_DIR=self.run_dir, MODEL_STORE=str(self.model_store),
                    INFERENCE_ADDRESS=self.address, INFERENCE_PORT=str(self.inference_port),
                    MANAGEMENT_PORT=str(self.management_port), WORKERS=str(self.workers),
                    BATCH_SIZE=str(self.batch_size), MAX_BATCH_DELAY=str(self.max_batch_delay))

    # ------------------------------------------------------------ life cycle
    def start(self, timeout=300):
        """start_mms.sh inside the namespace: registers with batching, waits READY
        and a right answer. Returns the Popen so hosts can start side by side."""
        Path(self.run_dir).mkdir(parents=True, exist_ok=True)
        console = open(Path(self.run_dir) / "start.log", "ab")
        return subprocess.Popen(self._in_namespace([str(ROOT / "start_mms.sh"), "start"]), env=self._env(),
                                stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def stop(self):
        """By the pid file in the host's run folder (start_mms.sh also cleans up
        after a crashed server: orphaned workers, sockets)."""
        if not (ROOT / ".venv" / "bin" / "python").exists():
            return
        subprocess.run([str(ROOT / "start_mms.sh"), "stop"], env=self._env(), capture_output=True,
                       timeout=120, stdin=subprocess.DEVNULL)

    def frontend(self):
        try:
            process = psutil.Process(int(self.pid_file.read_text().split()[0]))
            if process.status() != psutil.STATUS_ZOMBIE and "ModelServer" in " ".join(process.cmdline()):
                return process
        except (FileNotFoundError, ValueError, IndexError, psutil.Error):
            pass
        return None

    def worker_processes(self):
        """{worker id: process}: each MMS worker's command line holds its socket path."""
        marker = str(Path(self.run_dir).resolve() / "tmp" / ".mms.sock.")
        found = {}
        for process in psutil.process_iter(["cmdline"]):
            for word in process.info["cmdline"] or []:
                if word.startswith(marker):
                    found[word[len(marker):]] = process
        return found

    # ------------------------------------------------------------ management API (host loopback)
    def manage(self, method, path, timeout=10):
        """(status, text) from the host's management API; (None, reason) if nothing answered."""
        command = self._in_namespace(["curl", "-sS", "--max-time", str(timeout), "-X", method,
                                      "-w", "\n%{http_code}", f"http://127.0.0.1:{self.management_port}{path}"])
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout + 10)
        body, _, code = result.stdout.rpartition("\n")
        if result.returncode != 0 or not code.isdigit() or code == "000":
            return None, result.stderr.strip() or body
        return int(code), body

    def describe(self):
        status, text = self.manage("GET", f"/models/{MODEL}")
        if status != 200:
            return None
        described = json.loads(text)
        return described[0] if isinstance(described, list) else described

    def ready_workers(self):
        return [w for w in (self.describe() or {}).get("workers", []) if w.get("status") == "READY"]

    def unregister(self, timeout=60):
        status, text = self.manage("DELETE", f"/models/{MODEL}", timeout)
        if status not in (200, 404):
            raise HostError(f"{self.name}: unregistering failed ({status}): {text.strip()}")

    def register(self, mar_name, timeout=120):
        query = urllib.parse.urlencode({
            "url": mar_name, "model_name": MODEL, "batch_size": self.batch_size,
            "max_batch_delay": self.max_batch_delay, "initial_workers": self.workers, "synchronous": "true"})
        status, text = self.manage("POST", f"/models?{query}", timeout)
        if status != 200:
            raise HostError(f"{self.name}: registering {mar_name} failed ({status}): {text.strip()}")

    # ------------------------------------------------------------ predictions (over the bridge)
    def predict(self, number, timeout=5):
        connection = http.client.HTTPConnection(self.address, self.inference_port, timeout=timeout)
        try:
            connection.request("POST", f"/predictions/{MODEL}", body=json.dumps({"input.1": number}),
                               headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            return response.status, response.read().decode("utf-8", "replace")
        except OSError as error:
            return None, str(error)
        finally:
            connection.close()

    def wrong_answers(self, numbers=range(0, 1023)):
        """Inputs this host answers wrongly (or not at all); [] means all right."""
        def ask(number):
            status, text = self.predict(number)
            try:
                good = status == 200 and json.loads(text) == expected(number)
            except ValueError:
                good = False
            return None if good else (number, status, text[:100])
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            return [row for row in pool.map(ask, numbers) if row]

    def serving(self):
        return self.frontend() is not None and not self.wrong_answers([14])
