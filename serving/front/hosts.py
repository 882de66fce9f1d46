"""One model host of the fleet: an MMS started by the project's start_mms.sh,
inside the host's namespace, with its own run folder and model store.

The management API listens on the host's own loopback, so it is reached from
a thread that joined the host's namespace (network.run_in), never over the bridge.
"""

import os
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

import fizbuz_v2
from fizbuz import answers
from fizbuz.contract import (
    MAR_FILE_NAME,
    MAX_INPUT,
    MIN_INPUT,
    MODEL_NAME,
    PREDICT_PATH,
    ROOT,
    SINGLE_MODEL_NAME,
    SINGLE_PREDICT_PATH,
    SMOKE_INPUT,
)
from fizbuz.http_client import exchange, predict, predict_url
from serving.front.network import run_in
from serving.mms import management
from serving.mms.process import RunFolder, worker_processes

START_SCRIPT = ROOT / "start_mms.sh"


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
    mar: str = MAR_FILE_NAME  # the archive registered now (a file in model_store)
    previous_mar: str = None
    metrics_port: int = 0  # the host's Prometheus exporter (serving/metrics); 0 = start_mms.sh's default
    single_workers: int = 0  # workers of the batch-1 registration (adaptive batching); 0 = not registered
    run_as: str = ""  # the unprivileged user its MMS runs as (root starts it); "": the caller

    def as_dict(self):
        return asdict(self)

    @property
    def upstream(self):
        return f"{self.address}:{self.inference_port}"

    @property
    def model_store(self):
        return Path(self.run_dir) / "model_store"

    @property
    def run(self):
        return RunFolder(self.run_dir)

    def _in_namespace(self, command):
        return (["ip", "netns", "exec", self.namespace] if self.namespace else []) + command

    def _env(self):
        return dict(
            os.environ,
            FIZBUZ_RUN_DIR=self.run_dir,
            FIZBUZ_MODEL_STORE=str(self.model_store),
            FIZBUZ_INFERENCE_ADDRESS=self.address,
            FIZBUZ_INFERENCE_PORT=str(self.inference_port),
            FIZBUZ_MANAGEMENT_PORT=str(self.management_port),
            FIZBUZ_WORKERS=str(self.workers),
            FIZBUZ_BATCH_SIZE=str(self.batch_size),
            FIZBUZ_MAX_BATCH_DELAY=str(self.max_batch_delay),
            FIZBUZ_SINGLE_WORKERS=str(self.single_workers),
            FIZBUZ_MMS_RUN_AS=self.run_as,
            **({"FIZBUZ_METRICS_PORT": str(self.metrics_port)} if self.metrics_port else {}),
        )

    # ------------------------------------------------------------ life cycle
    def store_archive(self, source, name=MAR_FILE_NAME):
        """Copy an archive into the host's model store as `name`: whole (a rename
        over the old one) and readable by the host's MMS, whatever the source's
        mode; the store stays root's, so MMS cannot change what it serves."""
        self.model_store.mkdir(parents=True, exist_ok=True)
        self.model_store.chmod(0o755)
        staged = self.model_store / f".{name}.partial"
        shutil.copyfile(source, staged)
        staged.chmod(0o644)
        staged.replace(self.model_store / name)

    def start(self):
        """start_mms.sh inside the namespace: registers with batching, waits READY
        and a right answer. Returns the Popen so hosts can start side by side."""
        Path(self.run_dir).mkdir(parents=True, exist_ok=True)
        with open(Path(self.run_dir) / "start.log", "ab") as console:
            return subprocess.Popen(
                self._in_namespace([str(START_SCRIPT), "start"]),
                env=self._env(),
                stdout=console,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def stop(self):
        """By the pid file in the host's run folder (start_mms.sh also cleans up
        after a crashed server: orphaned workers, sockets)."""
        if not (ROOT / ".venv" / "bin" / "python").exists():
            return
        subprocess.run(
            [str(START_SCRIPT), "stop"], env=self._env(), capture_output=True, timeout=120, stdin=subprocess.DEVNULL
        )

    def frontend(self):
        return self.run.server()

    def worker_processes(self):
        """{worker id: process}"""
        return worker_processes(self.run)

    # ------------------------------------------------------------ management API (host loopback)
    @property
    def registrations(self):
        """(model name, batch size, max batch delay, workers, predictions path) of
        each registration: the batched one, and the batch-1 one when it has workers."""
        batched = [(MODEL_NAME, self.batch_size, self.max_batch_delay, self.workers, PREDICT_PATH)]
        single = [(SINGLE_MODEL_NAME, 1, 0, self.single_workers, SINGLE_PREDICT_PATH)] if self.single_workers else []
        return batched + single

    def describe(self, model=MODEL_NAME):
        return run_in(self.namespace, management.describe_model, self.management_port, model=model)

    def ready_workers(self, model=MODEL_NAME):
        return management.ready_workers(self.describe(model))

    def all_workers_ready(self):
        return all(len(self.ready_workers(name)) >= workers for name, _, _, workers, _ in self.registrations)

    def unregister(self, timeout=60):
        """Every registration of the model (a missing one is no error)."""
        for name in (MODEL_NAME, SINGLE_MODEL_NAME):
            run_in(self.namespace, management.unregister, self.management_port, timeout, model=name, missing_ok=True)

    def register(self, mar_name, timeout=120):
        """The archive under each of the host's registrations."""
        for name, batch_size, delay, workers, _ in self.registrations:
            run_in(
                self.namespace,
                management.register,
                self.management_port,
                batch_size,
                delay,
                workers,
                timeout,
                mar=mar_name,
                model=name,
            )

    # ------------------------------------------------------------ predictions (over the bridge)
    def predict(self, number, timeout=5, path=PREDICT_PATH):
        return predict(predict_url(self.inference_port, self.address, path=path), number, timeout)

    def wrong_answers(self, numbers=range(MIN_INPUT, MAX_INPUT + 1)):
        """Inputs this host answers wrongly (or not at all) through any of its
        registrations, card and v2; [] means all right."""
        wrong = []
        for *_, path in self.registrations:
            wrong += [
                (n, path, status, body)
                for n, status, body in answers.ask_all(
                    lambda number, path=path: self.predict(number, path=path), numbers
                )
            ]
            wrong += [(n, f"v2 {path}", status, body) for n, status, body in self.wrong_v2_answers(numbers, path)]
        return wrong

    def wrong_v2_answers(self, numbers, path):
        """The same numbers as one Open Inference Protocol request, as the front
        door's call sends it (fizbuz_v2.host_call): [] when every label is right."""
        numbers = list(numbers)
        headers, body = fizbuz_v2.host_call(numbers)
        status, _, text = exchange("POST", predict_url(self.inference_port, self.address, path=path), 30, body, headers)
        if status != 200:
            return [answers.Wrong(numbers[0], status, text[:100])]
        try:
            labels = fizbuz_v2.labels_of_reply(text.encode("latin-1", "replace"))
        except ValueError as error:
            return [answers.Wrong(numbers[0], status, str(error)[:100])]
        return answers.wrong_labels(numbers, labels)

    def serving(self):
        return self.frontend() is not None and not self.wrong_answers([SMOKE_INPUT])
