"""TorchServe handler for FizBuzNet: `fizbuz_ts_handler:handle`, for bench/torchserve.py.

Not a serving path of the project: TorchServe is what `fizbuz bench torchserve` measures
MMS against, so this handler keeps the card's contract exactly ({"input.1": n} -> {"next_number":
label of n + 1}, a 400 JSON error for anything else, from fizbuz_codec's rules) and does the
same work per batch as our MMS handler: parse and validate each body, one eager PyTorch
forward pass for the whole batch (our weights, our FizBuzNet class), argmax, label.

Runs inside a TorchServe 0.12 worker with torch and what the archive holds beside it:
fizbuz_codec.py and fizbuz/model.py (bench/torchserve.py stages both). The config it is
served with hands bodies over as raw bytes (decode_input_request=false), as MMS's does.
"""

import json
import logging
import os

import torch

import fizbuz_codec as codec
from fizbuz.model import FizBuzNet

log = logging.getLogger(__name__)

# The request's body, as TorchServe names the parameter of a raw POST body.
BODY_PARAMETER = "body"
BAD_REQUEST = (codec.ERROR_STATUS, "Bad Request")
FAILURE_STATUS, FAILURE_PHRASE = 500, "Internal Server Error"
# One torch thread per worker: the forward pass is microseconds, and two workers on a
# 2-core box must not each start a pool of intra-op threads that fight over the cores.
TORCH_THREADS = 1


class FizBuzHandler:
    """The model, loaded once per worker, and the per-batch work."""

    def __init__(self) -> None:
        self.initialized = False
        self.model: FizBuzNet | None = None
        self.bits: torch.Tensor | None = None

    def initialize(self, context) -> None:
        torch.set_num_threads(TORCH_THREADS)
        model_dir = context.system_properties["model_dir"]
        weights = os.path.join(model_dir, context.manifest["model"]["serializedFile"])
        model = FizBuzNet()
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self.model = model.eval()
        # The bits of n + 1 for every valid n: a batch's input is one row gather.
        self.bits = torch.tensor(
            [codec.encode(n + 1) for n in range(codec.MIN_INPUT, codec.MAX_INPUT + 1)], dtype=torch.float32
        )
        self.initialized = True
        log.info("FizBuzNet loaded from %s (%d torch thread)", weights, torch.get_num_threads())

    def handle(self, batch: list, context) -> list[str]:
        """One JSON reply per request, in order; a bad request gets its own 400."""
        numbers: list[int | None] = []
        replies: list[str | None] = []
        for idx, request in enumerate(batch):
            try:
                numbers.append(codec.validate_input(codec.decode_body(body_of(request))))
                replies.append(None)
            except codec.InvalidInput as error:
                numbers.append(None)
                replies.append(json.dumps(codec.error_reply(str(error))))
                context.set_response_status(*BAD_REQUEST, idx)
        wanted = [n for n in numbers if n is not None]
        if wanted:
            labels = iter(self.labels(wanted))
            for idx, number in enumerate(numbers):
                if number is not None:
                    replies[idx] = json.dumps({codec.OUTPUT_KEY: next(labels)})
        return replies

    def labels(self, numbers: list[int]) -> list[str]:
        """The model's label for each number's successor: one forward pass."""
        rows = torch.tensor(numbers, dtype=torch.long) - codec.MIN_INPUT
        with torch.inference_mode():
            classes = self.model(self.bits.index_select(0, rows)).argmax(dim=1).tolist()
        return [codec.readable(n + 1, c) for n, c in zip(numbers, classes)]


def body_of(request):
    """The request's payload: its body, or its form / query fields (?input.1=14)."""
    if not isinstance(request, dict):
        return request
    if BODY_PARAMETER in request:
        return request[BODY_PARAMETER]
    return codec.payload_from_fields(request)


def failure_replies(size: int, error: Exception, context) -> list[str]:
    """A 500 JSON reply for every request of a batch the handler could not answer."""
    message = f"the model could not answer this batch ({type(error).__name__}); the server log has the details"
    for idx in range(size):
        context.set_response_status(FAILURE_STATUS, FAILURE_PHRASE, idx)
    return [json.dumps({"error": message, "code": FAILURE_STATUS})] * size


_handler = FizBuzHandler()


def handle(data, context):
    """TorchServe's entry point: called with data=None once to load the model."""
    if not _handler.initialized:
        _handler.initialize(context)
    if data is None:
        return None
    try:
        return _handler.handle(data, context)
    except Exception as error:  # noqa: BLE001  a fault, not bad input: logged, answered 500
        log.exception("handler failed on a batch of %d request(s)", len(data))
        return failure_replies(len(data), error, context)
