"""Occupy the module's run thread on purpose, so tests can queue runs behind
it and know they are queued, without timing anything.

The holding model spins inside its forward pass until the test releases it.
It talks with the test through a 2-byte file mapped shared (torch.from_file):
the model sets byte 0 when its forward starts, the test sets byte 1 to let it
return. (A run waiting for MINBATCHSIZE no longer holds the thread: other
batches run past it.)"""

import contextlib
import io
import threading
import warnings

import torch

from redis_servers import give, wait_until

STARTED, RELEASE = 0, 1


class Hold(torch.nn.Module):
    def __init__(self, flag_path: str):
        super().__init__()
        self.flag_path = flag_path

    def forward(self, x):
        flag = torch.from_file(self.flag_path, True, 2, dtype=torch.uint8)
        flag[0] = 1
        while int(flag[1]) == 0:
            pass
        return x * 2


def hold_model(flag_path):
    """TorchScript bytes of the holding model for the flag file `flag_path`."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.jit")
        torch.jit.save(torch.jit.script(Hold(str(flag_path))), buffer)
    return buffer.getvalue()


class Holder:
    """One holding model (its blob and its flag file) for a test session."""

    def __init__(self, folder):
        give(folder)
        self.flag = folder / "hold.flag"
        self.flag.write_bytes(b"\0\0")
        give(self.flag)  # the model maps it read-write inside redis-server
        self.blob = hold_model(self.flag)

    def reset(self):
        with open(self.flag, "r+b") as f:
            f.write(b"\0\0")

    def started(self):
        return self.flag.read_bytes()[STARTED] == 1

    def release(self):
        with open(self.flag, "r+b") as f:
            f.seek(RELEASE)
            f.write(b"\1")


def blocked_clients(client):
    return client.info("clients")["blocked_clients"]


def start_run(server, model, inputs, outputs, replies, extra=()):
    """Run `model` in a thread of its own; its reply (or error text) goes to `replies`."""

    def run():
        try:
            replies.append(
                server.client().execute_command(
                    "AI.MODELEXECUTE", model, "INPUTS", 1, inputs, "OUTPUTS", 1, outputs, *extra
                )
            )
        except Exception as error:  # noqa: BLE001 - the test reads what came back
            replies.append(error)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@contextlib.contextmanager
def worker_held(server, holder, extra=()):
    """While inside, the one run thread is inside the holding model's forward
    pass; leaving releases it (and everything queued behind it). Yields the
    list that receives the holding run's reply."""
    holder.reset()
    r = server.client()
    r.execute_command("AI.MODELSTORE", "hold:model", "TORCH", "CPU", "BLOB", holder.blob)
    r.execute_command("AI.TENSORSET", "hold:in", "FLOAT", 1, 10)
    replies = []
    thread = start_run(server, "hold:model", "hold:in", "hold:out", replies, extra)
    try:
        wait_until(holder.started, "the holding run to start its forward pass")
        yield replies
    finally:
        holder.release()
        thread.join(60)
    assert replies == [b"OK"], replies
