"""Client for MMS 1.0.8's management API (always on 127.0.0.1)."""

import json
import urllib.parse

from fizbuz.contract import MAR_FILE_NAME, MODEL_NAME
from fizbuz.http_client import call
from fizbuz.lifecycle import LifecycleError


def url(port, path):
    return f"http://127.0.0.1:{port}{path}"


def answers(port):
    return call("GET", url(port, "/models"), 2)[0] == 200


def describe_model(port, timeout=10.0, model=MODEL_NAME):
    """The model's description (settings and workers), or None when no server
    with that model answers."""
    status, text = call("GET", url(port, f"/models/{model}"), timeout)
    if status != 200:
        return None
    described = json.loads(text)
    # MMS 1.0.8 answers with an object; later versions with a list of them.
    return described[0] if isinstance(described, list) else described


def ready_workers(description):
    return [w for w in (description or {}).get("workers", []) if w.get("status") == "READY"]


def register(port, batch_size, max_batch_delay, workers, timeout, mar=MAR_FILE_NAME, model=MODEL_NAME):
    """Register the archive with batching; synchronous, so it returns once the
    workers have started. Raises LifecycleError with MMS's answer on failure."""
    query = urllib.parse.urlencode(
        {
            "url": mar,
            "model_name": model,
            "batch_size": batch_size,
            "max_batch_delay": max_batch_delay,
            "initial_workers": workers,
            "synchronous": "true",
        }
    )
    status, text = call("POST", url(port, f"/models?{query}"), timeout=timeout)
    if status != 200:
        raise LifecycleError(f"registering the model failed ({status}): {text.strip()}")


def unregister(port, timeout, model=MODEL_NAME, missing_ok=False):
    """missing_ok: a model that is not registered (404) is no error."""
    status, text = call("DELETE", url(port, f"/models/{model}"), timeout=timeout)
    if status != 200 and not (missing_ok and status == 404):
        raise LifecycleError(f"unregistering the model failed ({status}): {text.strip()}")


def set_workers(port, low, high, timeout, model=MODEL_NAME):
    query = urllib.parse.urlencode({"min_worker": low, "max_worker": high, "synchronous": "true"})
    status, text = call("PUT", url(port, f"/models/{model}?{query}"), timeout=timeout)
    if status != 200:
        raise LifecycleError(f"scaling failed ({status}): {text.strip()}")
