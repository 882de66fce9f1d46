"""Start and stop the servers the bench compares, each on free ports in its own
folder, and check a sample of their answers before they are timed.

Each server is a context manager: leaving the block stops it by its PID, also
when the block raised.
"""

import concurrent.futures
import json
import os
import random
import shutil
import subprocess
import time
from pathlib import Path

import psutil

from fizbuz_codec import MAX_INPUT, MIN_INPUT, OUTPUT_KEY, true_label
from processes import end_family
from mms_control import http, predict
from ports import free_port

ROOT = Path(__file__).resolve().parent.parent
PREDICT_PATH = "/predictions/fizbuz_package"
NGINX_REPLY = '{"next_number": "FizzBuzz"}'


class ServerError(Exception):
    pass


def kill_family(pid, marker):
    """Kill pid and its children, if pid still runs a program whose command line has `marker`."""
    try:
        process = psutil.Process(pid)
        if marker not in " ".join(process.cmdline()):
            return
    except psutil.Error:
        return
    end_family(process, grace=0)


class Server:
    kind = "server"

    def __init__(self, folder):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.log = self.folder / "control.log"
        self.port = free_port()
        self.pid = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}{PREDICT_PATH}"

    def run_script(self, command, env, timeout=300):
        with open(self.log, "a") as log:
            log.write(f"$ {' '.join(map(str, command))}\n")
            log.flush()
            return subprocess.run([str(c) for c in command], env=env, stdout=log,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout)

    def fail(self, what):
        raise ServerError(f"{what}; see {self.log}")

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def expected(self, number):
        return {OUTPUT_KEY: true_label(number + 1)}

    def check_answers(self, sample_size, seed=1):
        """Ask about a random sample of inputs (and both bounds) concurrently, so
        batches form; raise ServerError on any wrong answer."""
        numbers = random.Random(seed).sample(range(MIN_INPUT, MAX_INPUT + 1), sample_size)
        numbers += [MIN_INPUT, MAX_INPUT]

        def ask(number):
            status, text = predict(self.port, number)
            try:
                reply = json.loads(text) if status == 200 else None
            except ValueError:
                reply = None
            return number, status, text, reply

        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            wrong = [(n, status, text.strip()[:80]) for n, status, text, reply in pool.map(ask, numbers)
                     if reply != self.expected(n)]
        if wrong:
            raise ServerError(f"{len(wrong)} of {len(numbers)} sampled answers are wrong, "
                              f"e.g. n={wrong[0][0]}: got {wrong[0][1]} {wrong[0][2]!r}, "
                              f"expected {self.expected(wrong[0][0])}")
        return len(numbers)


class MmsServer(Server):
    """MMS through start_mms.sh, with its run folder, ports and batching from env."""
    kind = "mms"

    def __init__(self, folder, model_store, batch_size, max_batch_delay, workers):
        super().__init__(folder)
        self.management_port = free_port(taken={self.port})
        self.env = dict(
            os.environ, FIZBUZ_RUN_DIR=str(self.folder), MODEL_STORE=str(model_store),
            INFERENCE_PORT=str(self.port), MANAGEMENT_PORT=str(self.management_port),
            BATCH_SIZE=str(batch_size), MAX_BATCH_DELAY=str(max_batch_delay), WORKERS=str(workers))

    def start(self):
        if self.run_script([ROOT / "start_mms.sh", "start"], self.env).returncode != 0:
            self.fail("start_mms.sh failed")
        self.pid = int((self.folder / "tmp" / ".model_server.pid").read_text().split()[0])

    def stop(self):
        self.run_script([ROOT / "start_mms.sh", "stop"], self.env, timeout=120)
        if self.pid is not None:
            kill_family(self.pid, "com.amazonaws.ml.mms.ModelServer")


class GunicornServer(Server):
    """The Flask baseline through flask_app/serve.sh."""
    kind = "flask"

    def __init__(self, folder, worker_class, workers, threads):
        super().__init__(folder)
        self.env = dict(os.environ, PORT=str(self.port), WORKERS=str(workers),
                        WORKER_CLASS=worker_class, THREADS=str(threads), FLASK_RUN_DIR=str(self.folder))

    def start(self):
        if self.run_script([ROOT / "flask_app" / "serve.sh", "start"], self.env).returncode != 0:
            self.fail("flask_app/serve.sh failed")
        self.pid = int((self.folder / "gunicorn.pid").read_text().strip())

    def stop(self):
        self.run_script([ROOT / "flask_app" / "serve.sh", "stop"], self.env, timeout=120)
        if self.pid is not None:
            kill_family(self.pid, "gunicorn")


NGINX_CONFIG = """\
worker_processes {workers};
pid {folder}/nginx.pid;
error_log {folder}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type application/json;
            return 200 '{reply}';
        }}
    }}
}}
"""


def nginx_binary():
    return shutil.which("nginx") or next(
        (path for path in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(path, os.X_OK)), None)


class NginxServer(Server):
    """nginx answering one fixed reply: the ceiling of HTTP on this machine."""
    kind = "nginx"

    def __init__(self, folder, workers):
        super().__init__(folder)
        self.workers = workers
        self.process = None

    def expected(self, number):
        return json.loads(NGINX_REPLY)

    def start(self, timeout=30):
        config = self.folder / "nginx.conf"
        config.write_text(NGINX_CONFIG.format(workers=self.workers, folder=self.folder,
                                              port=self.port, reply=NGINX_REPLY))
        command = [nginx_binary(), "-p", str(self.folder), "-e", str(self.folder / "error.log"),
                   "-c", str(config), "-g", "daemon off;"]
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        self.pid = self.process.pid
        deadline = time.monotonic() + timeout
        while http("GET", f"http://127.0.0.1:{self.port}/", timeout=2)[0] != 200:
            if self.process.poll() is not None:
                self.fail(f"nginx exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                self.fail(f"nginx did not answer within {timeout} s")
            time.sleep(0.05)  # a poll interval, not a readiness guess

    def stop(self):
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # nginx: fast shutdown on SIGTERM
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            kill_family(self.process.pid, "nginx")
            self.process.wait(timeout=5)
