"""A throwaway MMS for scripts (soak, fault runs): free ports, its own temp run
folder, always stopped by its pid file on exit. Never the user's server."""

import contextlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mms_control
from ports import free_port


@dataclass
class PrivateServer:
    run: mms_control.RunFolder
    inference_port: int
    management_port: int

    def describe(self):
        return mms_control.describe_model(self.management_port)

    def workers(self):
        """{worker id: psutil.Process}"""
        return mms_control.worker_processes(self.run)


@contextlib.contextmanager
def private_mms(model_store=None, batch_size=mms_control.DEFAULTS["batch_size"],
                max_batch_delay=mms_control.DEFAULTS["max_batch_delay"], workers=mms_control.DEFAULTS["workers"]):
    run_dir = Path(tempfile.mkdtemp(prefix="fbz-mms-"))  # short: worker socket paths live here
    inference = free_port()
    management = free_port(taken={inference})
    args = ["--run-dir", str(run_dir), "start", "--inference-port", str(inference),
            "--management-port", str(management), "--batch-size", str(batch_size),
            "--max-batch-delay", str(max_batch_delay), "--workers", str(workers)]
    if model_store is not None:
        args += ["--model-store", str(model_store)]
    try:
        if mms_control.main(args) != 0:
            raise RuntimeError(f"could not start a private MMS (logs in {run_dir / 'logs'})")
        yield PrivateServer(mms_control.RunFolder(run_dir), inference, management)
    finally:
        mms_control.stop_server(mms_control.RunFolder(run_dir), quiet=True)
        shutil.rmtree(run_dir, ignore_errors=True)
