"""MMS 1.0.8 handler for FizBuzNet: `fizbuz_service:handle`.

Runs inside an MMS worker with only the standard library, numpy, mxnet and
fizbuz_codec (shipped in the same archive). MMS calls handle(None, context)
once at load time and then handle(batch, context) with 1..batch_size
requests; we answer every request of a batch with one forward pass and give
each bad request its own 400 without failing its neighbours.
"""

import json
import logging
import os
import struct
import time
import urllib.parse

# A forward pass of this model takes microseconds; MXNet's default threaded
# engine spends more than that handing each op to its threads (measured: about
# 230 us of CPU per batch against 90 us synchronously). An explicit setting wins.
os.environ.setdefault("MXNET_ENGINE_TYPE", "NaiveEngine")

import mxnet as mx  # noqa: E402  (after the engine choice above)
import numpy as np  # noqa: E402

import fizbuz_codec as codec
import fizbuz_metrics
import fizbuz_v2 as v2

log = logging.getLogger(__name__)

# MMS 1.0.8's frontend decodes a worker's reply (mms/protocol/otf_message_handler.py
# create_predict_response) with two unguarded reads: each prediction's 4-byte
# status code and its header map. If a socket read ends inside either, the Java
# decoder throws and MMS kills the worker ("Worker died."). Netty reads in chunks
# whose sizes are multiples of 16, counted from the start of the reply, so:
#  - we set no response headers (not even Content-Type): the map stays empty;
#  - we pad each body with trailing spaces so that every status field starts at
#    offset STATUS_ALIGNMENT modulo 16 and never straddles a chunk boundary.
# Every other field of a record is read behind a length check, so the status
# is the one field to place. It is safe wherever its 4 bytes lie inside one
# chunk with at least one byte before them (a chunk ending right before an
# unguarded read fails too): offsets 1..12 modulo 16. We take the middle.
READ_CHUNK = 16
INT_FIELD = struct.calcsize("!i")  # the frame's lengths and codes: 4-byte big-endian ints
SAFE_STATUS_OFFSETS = range(1, READ_CHUNK - INT_FIELD + 1)
STATUS_ALIGNMENT = (SAFE_STATUS_OFFSETS.start + SAFE_STATUS_OFFSETS.stop - 1) // 2
assert STATUS_ALIGNMENT in SAFE_STATUS_OFFSETS
SUCCESS_MESSAGE = "Prediction success"
REPLY_HEAD = INT_FIELD + INT_FIELD + len(SUCCESS_MESSAGE)  # code, message length, message
ERROR_PHRASE = "Bad Request"
FAILURE_STATUS, FAILURE_PHRASE = 500, "Internal Server Error"
# MMS hands the raw body under this parameter name; query-string and form
# fields arrive under their own names.
BODY_PARAMETER = "body"
# model-archiver --convert writes the symbol and params next to this file,
# named after the archive's model name.
SIGNATURE_FILE = "signature.json"
# Set by the front door (serving/front/door.js) on the Open Inference Protocol's
# requests, in this spelling (it replaces any client header of the same name):
# "v2" (REST, with the model and version from the URL) or "grpc" (with the
# method's name). No protocol header: the card's request, {"input.1": n}.
PROTOCOL_HEADER, CALL_HEADER = v2.PROTOCOL_HEADER, v2.CALL_HEADER
MODEL_HEADER, VERSION_HEADER = v2.MODEL_HEADER, v2.VERSION_HEADER
HEADER_LENGTH_HEADER, ENCODING_HEADER = v2.HEADER_LENGTH_HEADER, v2.ENCODING_HEADER
PHRASES = {
    400: "Bad Request",
    404: "Not Found",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    503: "Service Unavailable",
}
# Per-request deadlines (issue 23): the front door stamps each request with the
# wall-clock time it arrived (RECEIVED_HEADER, nginx's $msec: seconds with
# milliseconds) and passes the client's budget on: TIMEOUT_HEADER (milliseconds,
# any protocol), gRPC's own grpc-timeout, or v2's "timeout" parameter
# (microseconds). A request whose budget is spent when its batch comes up is
# answered 503 without running: MMS would otherwise run every queued job, even
# one whose client has long given up. (Door and hosts share a clock: one
# machine here; NTP between real hosts.)
RECEIVED_HEADER, TIMEOUT_HEADER, GRPC_TIMEOUT_HEADER = v2.RECEIVED_HEADER, v2.TIMEOUT_HEADER, v2.GRPC_TIMEOUT_HEADER
MAX_TIMEOUT_MS = 3600 * 1000
GRPC_TIMEOUT_UNITS_MS = {"H": 3600e3, "M": 60e3, "S": 1e3, "m": 1.0, "u": 1e-3, "n": 1e-6}
# The largest forward pass: a bigger batch runs in chunks of this many rows.
MAX_ROWS = v2.MAX_NUMBERS


def status_offset(record_start, request_id):
    """Where a prediction's status code sits, given where its record starts:
    request id (length + text), content type (length 0), then the status."""
    return record_start + INT_FIELD + len(request_id.encode("utf-8")) + INT_FIELD


def align_for_frontend(replies, request_ids, phrases):
    """Pad each reply with spaces and a newline so that every prediction's status
    code in MMS's reply frame starts at STATUS_ALIGNMENT modulo READ_CHUNK."""
    ids = [request_ids[idx] for idx in range(len(replies))] if request_ids else []
    if len(ids) != len(replies):
        return replies  # no ids to lay out against (not inside MMS)
    aligned = []
    record_start = REPLY_HEAD
    for idx, reply in enumerate(replies):
        # The card's replies are text, the front door's envelopes bytes; MMS
        # sends both as their UTF-8 bytes.
        size = len(reply.encode("utf-8")) if isinstance(reply, str) else len(reply)
        # status, phrase (length + text), header map (length 0), body length
        body_start = (
            status_offset(record_start, ids[idx]) + INT_FIELD + INT_FIELD + len(phrases[idx]) + INT_FIELD + INT_FIELD
        )
        end = body_start + size + 1  # + the newline
        pad = 0
        if idx + 1 < len(replies):
            pad = (STATUS_ALIGNMENT - status_offset(end, ids[idx + 1])) % READ_CHUNK
        padding = " " * pad + "\n"
        aligned.append(reply + (padding if isinstance(reply, str) else padding.encode()))
        record_start = end + pad
    return aligned


class MXNetModelService:
    """FizBuzNet served from the MXNet symbol and params that model-archiver
    converted from fizbuz.onnx. One executor is bound for the registered batch
    size; smaller batches are padded, so a batch costs one forward pass."""

    def __init__(self):
        self.initialized = False
        self.batch_size = 1
        self.input_name = None
        self._executor = None
        self._bit_table = None
        self.metrics = fizbuz_metrics.NoMetrics()
        self.log_lines = True

    def initialize(self, context):
        properties = context.system_properties
        model_dir = properties.get("model_dir")
        self.batch_size = int(properties.get("batch_size") or 1)
        manifest_model = context.manifest["model"]

        with open(os.path.join(model_dir, SIGNATURE_FILE)) as f:
            signature = json.load(f)
        self.input_name = signature["inputs"][0]["data_name"]
        width = signature["inputs"][0]["data_shape"][1]
        if width != codec.BITS:
            raise ValueError(f"signature.json says {width} input bits, the codec uses {codec.BITS}")

        model_name = manifest_model["modelName"]
        symbol_file = os.path.join(model_dir, f"{model_name}-symbol.json")
        params_file = os.path.join(model_dir, f"{model_name}-0000.params")
        for path in (symbol_file, params_file):
            if not os.path.isfile(path):  # MXNet's own error names a C++ source line instead
                raise FileNotFoundError(f"{os.path.basename(path)} is missing from the archive in {model_dir}")
        symbol = mx.sym.load(symbol_file)
        params = mx.nd.load(params_file)
        arg_params = {k[4:]: v for k, v in params.items() if k.startswith("arg:")}
        aux_params = {k[4:]: v for k, v in params.items() if k.startswith("aux:")}

        self._executor = symbol.simple_bind(
            mx.cpu(), grad_req="null", **{self.input_name: (self.batch_size, codec.BITS)}
        )
        self._executor.copy_params_from(arg_params, aux_params)
        # One executor per forward size, sharing the weights: the bound batch
        # size, and powers of two up to MAX_ROWS for v2 requests of many numbers.
        self._executors = {}
        # Every valid number maps to one row of this table (the bits of n + 1),
        # so building a batch is a single numpy gather.
        self._bit_table = np.array(
            [codec.encode(n + 1) for n in range(codec.MIN_INPUT, codec.MAX_INPUT + 1)], dtype=np.float32
        )
        # Prometheus counters in this worker's own files (when the run folder has
        # metrics on), labelled with the registered name: one archive registered
        # twice (batched and batch 1) counts as two models. MMS's per-batch
        # metric log lines only when asked for.
        self.metrics = fizbuz_metrics.for_worker(context.model_name or model_name)
        self.log_lines = fizbuz_metrics.log_lines_wanted()
        self.initialized = True
        log.info("FizBuzNet loaded from %s: input %s, batch size %d", model_dir, self.input_name, self.batch_size)

    def preprocess(self, batch, context):
        """Parse and validate each request. Returns one Request per item: its
        protocol, the numbers it asks about (an int64 array) or the error to answer."""
        return [self._parse(request, idx, context) for idx, request in enumerate(batch)]

    def _parse(self, request, idx, context):
        headers = context.get_all_request_header(idx) or {}  # one dict per request: read it once
        protocol = _text(headers.get(PROTOCOL_HEADER))
        parsed = Request(protocol or CARD)
        try:
            if not protocol:
                number = codec.validate_input(codec.decode_body(self._body_of(request)))
                check_deadline(headers)
                parsed.numbers = np.array([number], dtype=np.int64)
                return parsed
            if protocol not in (REST, GRPC):
                raise v2.V2Error(f"unknown protocol {protocol[:20]!r} from the front door")
            parsed.call = v2.route(
                protocol,
                _text(headers.get(CALL_HEADER)),
                self._raw_body(request),
                model=urllib.parse.unquote(_text(headers.get(MODEL_HEADER))),
                version=urllib.parse.unquote(_text(headers.get(VERSION_HEADER))),
                header_length=_text(headers.get(HEADER_LENGTH_HEADER)),
                encoding=_text(headers.get(ENCODING_HEADER)),
            )
            if parsed.call.kind == v2.INFER:
                check_deadline(headers, parsed.call.request.timeout_us)
                parsed.numbers = parsed.call.request.numbers
            elif parsed.call.kind == v2.READY:
                # Ready only when a real prediction goes through: this one.
                parsed.numbers = np.array([codec.SMOKE_INPUT], dtype=np.int64)
        except codec.InvalidInput as error:
            parsed.error = error
            parsed.numbers = None
        return parsed

    @staticmethod
    def _raw_body(request):
        body = request.get(BODY_PARAMETER, b"") if isinstance(request, dict) else request
        if not isinstance(body, (bytes, bytearray)):
            raise v2.V2Error("the request body did not arrive as bytes")
        return body

    @staticmethod
    def _body_of(request):
        if not isinstance(request, dict):
            return request
        if BODY_PARAMETER in request:
            return request[BODY_PARAMETER]
        # ?input.1=14 or form fields: MMS hands each value as raw bytes, and
        # nothing at all for a JSON text sent form-encoded.
        return codec.payload_from_fields(request)

    def _executor_for(self, rows):
        """(executor, its input array, a host buffer for it) of the smallest
        bound size that holds `rows` rows."""
        size = self.batch_size if rows <= self.batch_size else min(MAX_ROWS, 1 << (rows - 1).bit_length())
        bound = self._executors.get(size)
        if bound is None:
            executor = self._executor
            if size != self.batch_size:
                executor = executor.reshape(allow_up_sizing=True, **{self.input_name: (size, codec.BITS)})
            bound = (executor, executor.arg_dict[self.input_name], np.zeros((size, codec.BITS), dtype=np.float32))
            self._executors[size] = bound
        return bound

    def inference(self, requests):
        """One forward pass (or one per MAX_ROWS rows) for every number of the
        batch; returns their logits, float32 [rows, 4], in request order."""
        wanted = [r.numbers for r in requests if r.numbers is not None]
        if not wanted:
            return np.zeros((0, len(codec.CLASS_LABELS)), dtype=np.float32)
        numbers = wanted[0] if len(wanted) == 1 else np.concatenate(wanted)
        parts = []
        for start in range(0, len(numbers), MAX_ROWS):
            chunk = numbers[start : start + MAX_ROWS]
            executor, source, rows = self._executor_for(len(chunk))
            # rows past the chunk keep old inputs; their outputs are ignored
            np.take(self._bit_table, chunk - codec.MIN_INPUT, axis=0, out=rows[: len(chunk)])
            # _sync_copyfrom is what `input[:] = rows` ends in, minus ~20 us of
            # generic indexing checks per call.
            source._sync_copyfrom(rows)
            executor.forward(is_train=False)
            parts.append(executor.outputs[0].asnumpy()[: len(chunk)])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    @staticmethod
    def postprocess(requests, logits):
        """One reply per request, in request order: the card's JSON text, or an
        envelope for the front door (fizbuz_v2.envelope) for v2 and gRPC."""
        replies, row = [], 0
        for request in requests:
            if request.error is not None:
                replies.append(_error_reply(request))
                continue
            if request.numbers is None:  # a metadata call: answered without the model
                replies.append(request.call.reply)
                continue
            scores = logits[row : row + len(request.numbers)]
            row += len(request.numbers)
            classes = scores.argmax(axis=1).tolist()
            labels = [codec.readable(n + 1, c) for n, c in zip(request.numbers.tolist(), classes)]
            replies.append(_answer(request, labels, scores))
        return replies

    def handle(self, batch, context):
        started = time.perf_counter()
        requests = self.preprocess(batch, context)
        preprocessed = time.perf_counter()
        logits = self.inference(requests)
        inferred = time.perf_counter()
        replies = self.postprocess(requests, logits)
        finished = time.perf_counter()

        phrases = []
        for idx, request in enumerate(requests):
            status = request.http_status()
            if status != 200:
                context.set_response_status(status, PHRASES[status], idx)
            phrases.append("" if status == 200 else PHRASES[status])
        replies = align_for_frontend(replies, context.request_ids, phrases)
        bad = sum(request.error is not None for request in requests)
        self.metrics.record_batch(
            len(batch) - bad,
            bad,
            (preprocessed - started, inferred - preprocessed, finished - inferred),
            time.perf_counter() - started,
        )
        metrics = context.metrics
        if self.log_lines and metrics is not None:
            metrics.add_time("PreprocessTime", round((preprocessed - started) * 1000, 3))
            metrics.add_time("InferenceTime", round((inferred - preprocessed) * 1000, 3))
            metrics.add_time("PostprocessTime", round((finished - inferred) * 1000, 3))
            metrics.add_counter("BatchSize", len(batch))
        return replies


CARD, REST, GRPC = "card", "v2", "grpc"


class DeadlinePassed(v2.V2Error):
    """The request's deadline passed before it could run: 503 (gRPC DEADLINE_EXCEEDED)."""

    def __init__(self, message):
        super().__init__(message, status=503)


def _budget_ms(headers, timeout_us):
    """The smallest time budget the request carries, in ms; None when none."""
    budgets = []
    text = _text(headers.get(TIMEOUT_HEADER))
    if text:
        if not codec.is_decimal(text) or not 0 < int(text) <= MAX_TIMEOUT_MS:
            raise codec.InvalidInput(
                f"{TIMEOUT_HEADER} must be a whole number of milliseconds, 1..{MAX_TIMEOUT_MS}, got {text[:20]!r}"
            )
        budgets.append(int(text))
    grpc_timeout = _text(headers.get(GRPC_TIMEOUT_HEADER))
    unit = grpc_timeout[-1:]
    if 2 <= len(grpc_timeout) <= 9 and codec.is_decimal(grpc_timeout[:-1]) and unit in GRPC_TIMEOUT_UNITS_MS:
        budgets.append(int(grpc_timeout[:-1]) * GRPC_TIMEOUT_UNITS_MS[grpc_timeout[-1]])
    if timeout_us:
        budgets.append(timeout_us / 1000)
    return min(budgets) if budgets else None


def check_deadline(headers, timeout_us=0, now=None):
    """Raise DeadlinePassed when the request's budget, counted from when the
    front door received it, is spent. No front-door stamp: no deadline to count from."""
    budget = _budget_ms(headers, timeout_us)
    received = _text(headers.get(RECEIVED_HEADER))
    if budget is None or not received:
        return
    try:
        waited = ((time.time() if now is None else now) - float(received)) * 1000
    except ValueError:
        raise codec.InvalidInput(f"{RECEIVED_HEADER} must be the time in seconds, got {received[:20]!r}")
    if waited > budget:
        raise DeadlinePassed(
            f"the request's deadline passed before it could run: it waited {waited:.0f} ms "
            f"of its {budget:g} ms; not run"
        )


class Request:
    """One request of a batch, parsed: its protocol, the numbers it asks about
    (None for an error or a metadata call), the v2 call, the error."""

    __slots__ = ("protocol", "numbers", "call", "error")

    def __init__(self, protocol):
        self.protocol = protocol
        self.numbers = None
        self.call = None  # fizbuz_v2.Call for v2 and gRPC
        self.error = None

    def http_status(self):
        """The status MMS answers with. gRPC carries its status in the envelope
        (a gRPC reply is HTTP 200 whatever its outcome)."""
        if self.error is None or self.protocol == GRPC:
            return 200
        return getattr(self.error, "status", codec.ERROR_STATUS)


def _text(value):
    """A request header's value as MMS hands it (str, bytes or None), as text."""
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("latin-1")
    return value or ""


def _error_reply(request):
    if request.protocol == CARD:
        return json.dumps(codec.error_reply(str(request.error), request.http_status()))
    if not isinstance(request.error, v2.V2Error):
        request.error = v2.V2Error(str(request.error))
    return v2.error_envelope(request.error, grpc=request.protocol == GRPC)


def _answer(request, labels, scores):
    if request.protocol == CARD:
        return json.dumps({codec.OUTPUT_KEY: labels[0]})
    if request.call.kind == v2.READY:
        return v2.ready_reply(request.call, labels[0] == codec.SMOKE_ANSWER)
    return v2.infer_reply(request.call, labels, scores)


def failure_replies(batch_size, error, context):
    """A padded 500 JSON reply for every request of a batch the handler could
    not answer. Left to MMS, an exception becomes its own 503 frame, unpadded,
    whose records can straddle a read and kill the worker on top of the failure."""
    message = f"the model could not answer this batch ({type(error).__name__}); the server log has the details"
    replies = [json.dumps({"error": message, "code": FAILURE_STATUS})] * batch_size
    for idx in range(batch_size):
        context.set_response_status(FAILURE_STATUS, FAILURE_PHRASE, idx)
    return align_for_frontend(replies, context.request_ids, [FAILURE_PHRASE] * batch_size)


_service = MXNetModelService()


def handle(data, context):
    """MMS entry point. Called with data=None once, to load the model (a
    failure there fails the registration, visibly)."""
    if not _service.initialized:
        _service.initialize(context)
    if data is None:
        return None
    try:
        return _service.handle(data, context)
    except Exception as error:  # noqa: BLE001  a fault, not bad input: logged with its traceback, answered 500
        log.exception("handler failed on a batch of %d request(s)", len(data))
        _service.metrics.record_failure(len(data))
        return failure_replies(len(data), error, context)
