"""Build the objects MMS 1.0.8 hands a handler, without a running server.

These are MMS's own Context, RequestProcessor and MetricsStore classes, filled
in as mms/service.py fills them for a batch.
"""

import json
import uuid
from pathlib import Path

from mms.context import Context, RequestProcessor
from mms.metrics.metrics_store import MetricsStore

from fizbuz.contract import MODEL_NAME


def load_context(model_dir, batch_size):
    model_dir = Path(model_dir)
    manifest = json.loads((model_dir / "MAR-INF" / "MANIFEST.json").read_text())
    context = Context(MODEL_NAME, str(model_dir), manifest, batch_size, None, "1.0.8")
    context.metrics = MetricsStore("load", MODEL_NAME)
    return context


def load_service(model_dir, batch_size):
    """The handler's service initialised on an unpacked archive, as a worker
    registered with `batch_size` does it."""
    import fizbuz_service  # needs mxnet: imported only where a handler is wanted

    service = fizbuz_service.MXNetModelService()
    service.initialize(load_context(model_dir, batch_size))
    return service


def batch_context(context, size):
    """Prepare `context` for a batch of `size` requests, as MMS does per batch."""
    request_ids = {idx: str(uuid.uuid4()) for idx in range(size)}  # as the frontend makes them
    context.request_ids = request_ids
    context.request_processor = [RequestProcessor({}) for _ in range(size)]
    context.metrics = MetricsStore(request_ids, MODEL_NAME)
    return context


def raw_request(body):
    """One request as the worker sees it with decode_input_request=false."""
    if isinstance(body, str):
        body = body.encode("utf-8")
    elif not isinstance(body, (bytes, bytearray)):
        body = json.dumps(body).encode("utf-8")
    return {"body": bytearray(body)}


def statuses(context, size):
    return [context.get_response_status(idx)[0] for idx in range(size)]
