"""Start and stop the servers the bench compares, each on free ports in its own
folder, and check a sample of their answers before they are timed.

Each server is a context manager: leaving the block stops it by its PID, also
when the block raised.
"""

import json
import random
from pathlib import Path

from fizbuz import answers
from fizbuz.contract import MAX_INPUT, MIN_INPUT, OUTPUT_KEY, SMOKE_ANSWER, expected_reply
from fizbuz.http_client import call, predict, predict_url
from fizbuz.lifecycle import LifecycleError, PidFile, free_port, start_server
from serving.flask.private import PrivateGunicorn
from serving.front.nginx import foreground_command
from serving.mms.private import PrivateMms
from fizbuz.errors import FizbuzError

NGINX_REPLY = json.dumps({OUTPUT_KEY: SMOKE_ANSWER})


class ServerError(FizbuzError):
    pass


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
        return predict_url(self.port)

    def start_private(self, server, script):
        """Start a throw-away server of serving/ (PrivateMms, PrivateGunicorn)."""
        try:
            server.start()
        except LifecycleError as error:
            with open(self.log, "a") as log:
                log.write(f"{error}\n")
            self.fail(f"{script} failed")
        self.pid = server.pid

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
        return expected_reply(number)

    def check_answers(self, sample_size, seed=1):
        """Ask about a random sample of inputs (and both bounds) concurrently, so
        batches form; raise ServerError on any wrong answer."""
        numbers = random.Random(seed).sample(range(MIN_INPUT, MAX_INPUT + 1), sample_size)
        numbers += [MIN_INPUT, MAX_INPUT]
        wrong = answers.ask_all(
            lambda number: predict(self.url, number),
            numbers,
            threads=16,
            right=lambda n, status, text: answers.reply_equals(status, text, self.expected(n)),
        )
        if wrong:
            raise ServerError(
                f"{answers.summary(wrong, len(numbers))} (this server's expected: {self.expected(wrong[0].number)})"
            )
        return len(numbers)


class MmsServer(Server):
    """A throw-away MMS (serving.mms.private) with the given batching."""

    kind = "mms"

    def __init__(self, folder, model_store, batch_size, max_batch_delay, workers):
        super().__init__(folder)
        self.mms = PrivateMms(
            model_store=model_store,
            run_dir=self.folder,
            batch_size=batch_size,
            max_batch_delay=max_batch_delay,
            workers=workers,
        )
        self.port = self.mms.inference_port

    def start(self):
        self.start_private(self.mms, "start_mms.sh")

    def stop(self):
        self.mms.stop()


class GunicornServer(Server):
    """The Flask baseline: a throw-away gunicorn (serving.flask.private)."""

    kind = "flask"

    def __init__(self, folder, worker_class, workers, threads):
        super().__init__(folder)
        self.gunicorn = PrivateGunicorn(worker_class, workers, threads, run_dir=self.folder)
        self.port = self.gunicorn.port

    def start(self):
        self.start_private(self.gunicorn, "serving/flask/serve.sh")

    def stop(self):
        self.gunicorn.stop()


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


class NginxServer(Server):
    """nginx answering one fixed reply: the ceiling of HTTP on this machine."""

    kind = "nginx"

    def __init__(self, folder, workers):
        super().__init__(folder)
        self.workers = workers
        self.pid_file = PidFile(self.folder / "nginx.pid", "nginx")

    def expected(self, number):
        return json.loads(NGINX_REPLY)

    def start(self, timeout=30):
        config = self.folder / "nginx.conf"
        config.write_text(
            NGINX_CONFIG.format(workers=self.workers, folder=self.folder, port=self.port, reply=NGINX_REPLY)
        )
        # nginx writes its own pid file too (the config's `pid`): the same pid.
        command = foreground_command(self.folder, config, self.folder / "error.log")
        try:
            process = start_server(
                command,
                self.pid_file,
                self.log,
                ready=lambda: call("GET", f"http://127.0.0.1:{self.port}/", timeout=2)[0] == 200,
                what=f"nginx on port {self.port}",
                timeout=timeout,
            )
        except LifecycleError as error:
            self.fail(str(error))
        self.pid = process.pid

    def stop(self):
        self.pid_file.stop(grace=15)  # nginx: fast shutdown on SIGTERM
