"""The Open Inference Protocol v2 (KServe's "v2", Triton's protocol) for FizBuzNet.

Ships inside the .mar beside fizbuz_codec: the handler parses v2 requests (REST
JSON, REST with the binary tensor extension, and gRPC's ModelInferRequest) and
writes their replies with it; the front door's renderer (serving/front/config.py)
takes the metadata answers from here too, so each is written once.

The model, as v2 sees it:
  input   "input.1"      an integer tensor, shape [N, 1] or [N], 1 <= N <= MAX_NUMBERS,
                         each value 0..1022 (the card's rule)
  outputs "next_number"  BYTES, the card's label of n + 1 for each n (shape [N, 1] or [N],
                                like the input)
          "logits"       FP32 [N, 4], the raw scores (number, Fizz, Buzz, FizzBuzz)

The handler answers the front door in an envelope (see `envelope`): MMS 1.0.8
cannot safely send response headers (fizbuz_service.py says why), so the first
line of the body carries the status, content type and the v2/gRPC header values
that the door (serving/front/door.js) turns into real headers and trailers.
"""

import json
import struct
import urllib.parse
import zlib
from dataclasses import dataclass, field

import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

import fizbuz_codec as codec

SERVER_NAME = "fizbuz-serve"
SERVER_VERSION = "0.3.0"
MODEL_NAME = codec.MODEL_NAME
MODEL_VERSION = "1"
VERSIONS = (MODEL_VERSION,)
PLATFORM = "mxnet_mms"  # MXNet symbol + params served by MXNet Model Server 1.0.8
# What a client can really use here (Triton's extension names).
EXTENSIONS = ("binary_tensor_data", "model_configuration")
MAX_NUMBERS = 1024  # numbers per request: all 1023 inputs fit in one
MAX_INFLATED = 1 << 20  # bytes a compressed request body may grow to
MAX_TIMEOUT_US = 3600 * 10**6  # a request's "timeout" parameter: at most an hour

INPUT_NAME = codec.INPUT_KEY  # "input.1", the card's key
LABEL_OUTPUT = codec.OUTPUT_KEY  # "next_number", the card's key
LOGITS_OUTPUT = "logits"
OUTPUTS = (LABEL_OUTPUT, LOGITS_OUTPUT)
CLASSES = len(codec.CLASS_LABELS)

# Integer datatypes accepted for the input, with their little-endian layout.
INTEGER_TYPES = {
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
}
# gRPC's InferTensorContents field that carries each integer datatype.
CONTENTS_FIELD = {
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
}

# gRPC status codes (grpc/doc/statuscodes.md) for the HTTP statuses we answer with.
GRPC_OK, GRPC_INVALID_ARGUMENT, GRPC_NOT_FOUND = 0, 3, 5
GRPC_RESOURCE_EXHAUSTED, GRPC_UNIMPLEMENTED, GRPC_INTERNAL = 8, 12, 13
GRPC_DEADLINE_EXCEEDED = 4
# 503: the request's deadline passed before it could run (fizbuz_service.deadline_passed).
GRPC_FOR_HTTP = {
    400: GRPC_INVALID_ARGUMENT,
    404: GRPC_NOT_FOUND,
    413: GRPC_RESOURCE_EXHAUSTED,
    503: GRPC_DEADLINE_EXCEEDED,
}

# The headers the front door's calls carry to the handler (door.js sets them
# through serving/front/config.py's CALL_HEADERS; fizbuz_service.py reads them).
PROTOCOL_HEADER, CALL_HEADER = "X-Fizbuz-Protocol", "X-Fizbuz-Call"
MODEL_HEADER, VERSION_HEADER = "X-Fizbuz-Model", "X-Fizbuz-Version"
HEADER_LENGTH_HEADER, ENCODING_HEADER = "Inference-Header-Content-Length", "X-Fizbuz-Content-Encoding"
# Deadlines (issue 23, fizbuz_service.check_deadline): the door's arrival stamp,
# the client's budget in ms (any protocol), gRPC's own timeout header.
RECEIVED_HEADER, TIMEOUT_HEADER, GRPC_TIMEOUT_HEADER = "X-Fizbuz-Received", "Timeout-Ms", "Grpc-Timeout"

JSON_TYPE = "application/json"
BINARY_TYPE = "application/octet-stream"
GRPC_TYPE = "application/grpc"
ENVELOPE_MAGIC = "FZ1"


class V2Error(codec.InvalidInput):
    """A request refused with `status` (400, 404 or 413); the message names what was wrong."""

    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status

    @property
    def grpc_code(self):
        return GRPC_FOR_HTTP.get(self.status, GRPC_INVALID_ARGUMENT)


@dataclass
class InferRequest:
    """What a v2 inference request asks, whatever its wire form."""

    numbers: np.ndarray  # int64, flattened, validated
    rank: int = 2  # 2 for [N, 1], 1 for [N]
    id: str = ""
    has_id: bool = False
    outputs: list = field(default_factory=lambda: [(name, None) for name in OUTPUTS])  # (name, binary or None)
    binary_default: bool = False  # REST: "binary_data_output"
    timeout_us: int = 0  # the "timeout" parameter (Triton's, microseconds); 0: none


# ---------------------------------------------------------------- metadata


def server_metadata():
    return {"name": SERVER_NAME, "version": SERVER_VERSION, "extensions": list(EXTENSIONS)}


def _tensors():
    """(name, datatype, shape) of the inputs and outputs, -1 for the batch dimension."""
    inputs = [(INPUT_NAME, "INT64", [-1, 1])]
    outputs = [(LABEL_OUTPUT, "BYTES", [-1, 1]), (LOGITS_OUTPUT, "FP32", [-1, CLASSES])]
    return inputs, outputs


def model_metadata():
    inputs, outputs = _tensors()
    return {
        "name": MODEL_NAME,
        "versions": list(VERSIONS),
        "platform": PLATFORM,
        "inputs": [{"name": n, "datatype": t, "shape": s} for n, t, s in inputs],
        "outputs": [{"name": n, "datatype": t, "shape": s} for n, t, s in outputs],
    }


def _config_type(datatype):
    return "TYPE_STRING" if datatype == "BYTES" else f"TYPE_{datatype}"


def model_config():
    """Triton's model configuration, the fields a client reads: dims without the
    batch dimension, which max_batch_size > 0 implies."""
    inputs, outputs = _tensors()
    return {
        "name": MODEL_NAME,
        "platform": PLATFORM,
        "max_batch_size": MAX_NUMBERS,
        "input": [{"name": n, "data_type": _config_type(t), "dims": s[1:]} for n, t, s in inputs],
        "output": [{"name": n, "data_type": _config_type(t), "dims": s[1:]} for n, t, s in outputs],
    }


def check_model(name, version):
    """A model name and version from a URL or a gRPC request; "" is the latest version."""
    if name != MODEL_NAME:
        raise V2Error(f"unknown model {_quote(name)}: this server serves {MODEL_NAME!r}", 404)
    if version not in ("",) + VERSIONS:
        raise V2Error(
            f"unknown version {_quote(version)} of model {MODEL_NAME!r}: versions are {', '.join(VERSIONS)}", 404
        )


def _quote(text):
    text = str(text)
    return repr(text if len(text) <= 64 else text[:61] + "...")


# ---------------------------------------------------------------- the numbers


def _numbers_from(values, datatype, where):
    """Validate decoded values (ints from JSON or an integer array): every one
    an integer in MIN_INPUT..MAX_INPUT; errors name the first bad element."""
    if isinstance(values, np.ndarray) and len(values) <= 32:
        values = values.tolist()  # a few numbers: Python's checks cost less than numpy's calls
    if isinstance(values, np.ndarray):
        bad = np.flatnonzero((values < codec.MIN_INPUT) | (values > codec.MAX_INPUT))
        if bad.size:
            index = int(bad[0])
            raise V2Error(
                f"{where} element {index}: {values[index]} is out of range {codec.MIN_INPUT}..{codec.MAX_INPUT}"
            )
        return values.astype(np.int64)
    for index, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, int):
            raise V2Error(f"{where} element {index}: expected an integer ({datatype}), got {codec._describe(value)}")
        if not codec.MIN_INPUT <= value <= codec.MAX_INPUT:
            raise V2Error(
                f"{where} element {index}: {value if abs(value) < 10**30 else 'a huge number'} "
                f"is out of range "
                f"{codec.MIN_INPUT}..{codec.MAX_INPUT}"
            )
    return np.asarray(values, dtype=np.int64)


def _count_from_shape(shape, where):
    """N from a shape [N, 1] or [N], with its rank."""
    if (
        not isinstance(shape, (list, tuple))
        or not 1 <= len(shape) <= 2
        or any(isinstance(d, bool) or not isinstance(d, int) for d in shape)
        or (len(shape) == 2 and shape[1] != 1)
    ):
        raise V2Error(f"{where} shape {_quote(shape)}: expected [N, 1] or [N] with N numbers")
    count = shape[0]
    if count < 1:
        raise V2Error(f"{where} shape {list(shape)}: N must be at least 1")
    if count > MAX_NUMBERS:
        raise V2Error(f"{where} shape {list(shape)}: at most {MAX_NUMBERS} numbers per request", 413)
    return count, len(shape)


def _check_input_head(name, datatype, where="input"):
    if name != INPUT_NAME:
        raise V2Error(f"unknown input {_quote(name)}: the model's input is {INPUT_NAME!r}")
    if datatype not in INTEGER_TYPES:
        raise V2Error(
            f"{where} {INPUT_NAME!r}: datatype {_quote(datatype)} is not accepted; "
            f"send an integer type ({', '.join(INTEGER_TYPES)})"
        )


def _from_raw(raw, datatype, count, where):
    dtype = np.dtype(INTEGER_TYPES[datatype])
    if len(raw) != count * dtype.itemsize:
        raise V2Error(
            f"{where} {INPUT_NAME!r}: {len(raw)} bytes of data, expected {count * dtype.itemsize} "
            f"({count} x {datatype})"
        )
    return np.frombuffer(raw, dtype=dtype)


def _requested_outputs(names_and_binary):
    """[(name, binary or None)] in the order asked; unknown or repeated names refused."""
    chosen, seen = [], set()
    for name, binary in names_and_binary:
        if name not in OUTPUTS:
            raise V2Error(f"unknown output {_quote(name)}: the outputs are {', '.join(OUTPUTS)}")
        if name in seen:
            raise V2Error(f"output {name!r} is asked for twice")
        seen.add(name)
        chosen.append((name, binary))
    return chosen


# ---------------------------------------------------------------- REST


def inflate(body, encoding):
    """A request body sent with Content-Encoding gzip or deflate (tritonclient's
    request_compression_algorithm), bounded so a small body cannot grow without end."""
    if not encoding or encoding == "identity":
        return body
    if encoding not in ("gzip", "deflate"):
        raise V2Error(f"Content-Encoding {_quote(encoding)} is not supported (gzip, deflate)", 415)
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        out = inflater.decompress(bytes(body), MAX_INFLATED)
    except zlib.error as error:
        raise V2Error(f"the {encoding} body does not decompress: {error}")
    if inflater.unconsumed_tail:
        raise V2Error(f"the decompressed body is larger than {MAX_INFLATED} bytes", 413)
    return out


def parse_rest(body, header_length=None):
    """A REST infer body (JSON, or a JSON header then binary tensors when
    `header_length`, the Inference-Header-Content-Length value, is given)."""
    body = bytes(body)
    binary = b""
    if header_length not in (None, ""):
        if not codec.is_decimal(header_length) or int(header_length) > len(body):
            raise V2Error(
                f"Inference-Header-Content-Length {_quote(header_length)}: expected the byte "
                f"length of the JSON header, at most the body's {len(body)} bytes"
            )
        split = int(header_length)
        body, binary = body[:split], body[split:]
    if not body.strip():
        raise V2Error(
            f'empty body: send an inference request like {{"inputs": [{{"name": "{INPUT_NAME}", '
            f'"datatype": "INT64", "shape": [1, 1], "data": [14]}}]}}'
        )
    try:
        document = codec.decode_body(body)
    except codec.InvalidInput as error:  # the codec's JSON errors, as v2 errors
        raise V2Error(str(error))
    if not isinstance(document, dict):
        raise V2Error(f'body must be a JSON object with "inputs", got {type(document).__name__}')
    request_id = document.get("id", "")
    if not isinstance(request_id, str):
        raise V2Error(f'"id" must be a string, got {codec._describe(request_id)}')
    parameters = _parameters(document.get("parameters", {}), "request")
    inputs = document.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1:
        raise V2Error(f'"inputs" must be a list of one tensor ({INPUT_NAME!r})')
    numbers, rank, used = _rest_input(inputs[0], binary)
    if used != len(binary):
        raise V2Error(
            f"{len(binary) - used} bytes after the binary tensors; binary_data_size must cover the body exactly"
        )
    outputs = document.get("outputs")
    if outputs is None:
        chosen = [(name, None) for name in OUTPUTS]
    elif isinstance(outputs, list) and outputs:
        chosen = _requested_outputs(_rest_output(item) for item in outputs)
    else:
        raise V2Error('"outputs" must be a non-empty list of {"name": ...} objects')
    binary_default = parameters.get("binary_data_output", False)
    if not isinstance(binary_default, bool):
        raise V2Error('parameter "binary_data_output" must be true or false')
    return InferRequest(
        numbers=numbers,
        rank=rank,
        id=request_id,
        has_id="id" in document,
        outputs=chosen,
        binary_default=binary_default,
        timeout_us=_timeout(parameters.get("timeout")),
    )


def _timeout(value):
    """The request's "timeout" parameter: microseconds it may wait before it
    runs (as Triton reads it); work whose time is up is not started."""
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TIMEOUT_US:
        raise V2Error(
            f'parameter "timeout" must be a whole number of microseconds, 0..{MAX_TIMEOUT_US}, got {_quote(value)}'
        )
    return value


def _parameters(value, where):
    if not isinstance(value, dict):
        raise V2Error(f'{where} "parameters" must be a JSON object')
    return value  # unknown ones (priority, timeout, ...) are tolerated


def _rest_input(tensor, binary):
    if not isinstance(tensor, dict):
        raise V2Error("each input must be a JSON object with name, shape, datatype and data")
    _check_input_head(tensor.get("name"), tensor.get("datatype"))
    count, rank = _count_from_shape(tensor.get("shape"), f"input {INPUT_NAME!r}")
    parameters = _parameters(tensor.get("parameters", {}), f"input {INPUT_NAME!r}")
    size = parameters.get("binary_data_size")
    where = f"input {INPUT_NAME!r}"
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= len(binary):
            raise V2Error(
                f"{where}: binary_data_size {_quote(size)} does not fit the {len(binary)} bytes after the JSON header"
            )
        if "data" in tensor:
            raise V2Error(f'{where}: give either "data" or binary_data_size, not both')
        raw = _from_raw(binary[:size], tensor["datatype"], count, where)
        return _numbers_from(raw, tensor["datatype"], where), rank, size
    data = tensor.get("data")
    if not isinstance(data, list):
        raise V2Error(f'{where}: "data" must be a list of {count} integers')
    if rank == 2 and data and all(isinstance(row, list) for row in data):
        data = [value for row in data for value in (row if len(row) == 1 else [row])]  # nested [[n], ...]
    if len(data) != count:
        raise V2Error(f'{where}: {len(data)} values in "data" for shape {tensor["shape"]} ({count} expected)')
    return _numbers_from(data, tensor["datatype"], where), rank, 0


def _rest_output(item):
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise V2Error('each requested output must be a JSON object with a "name"')
    parameters = _parameters(item.get("parameters", {}), f"output {_quote(item['name'])}")
    if parameters.get("classification"):
        raise V2Error(
            f"the classification extension is not supported: ask for {LABEL_OUTPUT!r} (the labels) or {LOGITS_OUTPUT!r}"
        )
    binary = parameters.get("binary_data")
    if binary is not None and not isinstance(binary, bool):
        raise V2Error(f"output {_quote(item['name'])}: binary_data must be true or false")
    return item["name"], binary


def _bytes_tensor(labels):
    """BYTES elements as the binary extension and gRPC's raw contents carry them:
    a 4-byte little-endian length before each element."""
    encoded = [label.encode() for label in labels]
    return b"".join(struct.pack("<I", len(item)) + item for item in encoded)


def _output_shape(name, request):
    count = len(request.numbers)
    if name == LOGITS_OUTPUT:
        return [count, CLASSES]
    return [count, 1] if request.rank == 2 else [count]


def rest_reply(request, labels, logits):
    """(payload, JSON header length or None): the JSON reply, followed by the
    binary outputs when any was asked for in binary."""
    outputs, blobs = [], []
    for name, binary in request.outputs:
        binary = request.binary_default if binary is None else binary
        tensor = {
            "name": name,
            "datatype": "BYTES" if name == LABEL_OUTPUT else "FP32",
            "shape": _output_shape(name, request),
        }
        if binary:
            blob = _bytes_tensor(labels) if name == LABEL_OUTPUT else logits.astype("<f4").tobytes()
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = list(labels) if name == LABEL_OUTPUT else [float(x) for x in logits.ravel().tolist()]
        outputs.append(tensor)
    document = {"model_name": MODEL_NAME, "model_version": MODEL_VERSION}
    if request.has_id:
        document["id"] = request.id
    document["outputs"] = outputs
    head = json.dumps(document, separators=(",", ":")).encode()
    if not blobs:
        return head, None
    return head + b"".join(blobs), len(head)


def error_json(message):
    return json.dumps({"error": message}).encode()


# ---------------------------------------------------------------- gRPC

# The messages of inference.GRPCInferenceService that this server answers,
# written from the Open Inference Protocol's gRPC spec (and Triton's
# ModelConfig, of which the fields a client reads). Field tuples: name,
# number, type, repeated?, message type (for messages and maps).
_B, _I64, _U64, _I32, _U32, _F, _D, _S, _BY, _M, _E = (
    descriptor_pb2.FieldDescriptorProto.TYPE_BOOL,
    descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
    descriptor_pb2.FieldDescriptorProto.TYPE_UINT64,
    descriptor_pb2.FieldDescriptorProto.TYPE_INT32,
    descriptor_pb2.FieldDescriptorProto.TYPE_UINT32,
    descriptor_pb2.FieldDescriptorProto.TYPE_FLOAT,
    descriptor_pb2.FieldDescriptorProto.TYPE_DOUBLE,
    descriptor_pb2.FieldDescriptorProto.TYPE_STRING,
    descriptor_pb2.FieldDescriptorProto.TYPE_BYTES,
    descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
    descriptor_pb2.FieldDescriptorProto.TYPE_ENUM,
)
_PARAMS = "map:InferParameter"
SCHEMA = {
    "ServerLiveResponse": [("live", 1, _B)],
    "ServerReadyResponse": [("ready", 1, _B)],
    "ModelReadyRequest": [("name", 1, _S), ("version", 2, _S)],
    "ModelReadyResponse": [("ready", 1, _B)],
    "ServerMetadataResponse": [("name", 1, _S), ("version", 2, _S), ("extensions", 3, _S, True)],
    "ModelMetadataRequest": [("name", 1, _S), ("version", 2, _S)],
    "TensorMetadata": [("name", 1, _S), ("datatype", 2, _S), ("shape", 3, _I64, True)],
    "ModelMetadataResponse": [
        ("name", 1, _S),
        ("versions", 2, _S, True),
        ("platform", 3, _S),
        ("inputs", 4, "TensorMetadata", True),
        ("outputs", 5, "TensorMetadata", True),
    ],
    "InferParameter": [
        ("bool_param", 1, _B, False, "choice"),
        ("int64_param", 2, _I64, False, "choice"),
        ("string_param", 3, _S, False, "choice"),
        ("double_param", 4, _D, False, "choice"),
        ("uint64_param", 5, _U64, False, "choice"),
    ],
    "InferTensorContents": [
        ("bool_contents", 1, _B, True),
        ("int_contents", 2, _I32, True),
        ("int64_contents", 3, _I64, True),
        ("uint_contents", 4, _U32, True),
        ("uint64_contents", 5, _U64, True),
        ("fp32_contents", 6, _F, True),
        ("fp64_contents", 7, _D, True),
        ("bytes_contents", 8, _BY, True),
    ],
    "InferInputTensor": [
        ("name", 1, _S),
        ("datatype", 2, _S),
        ("shape", 3, _I64, True),
        ("parameters", 4, _PARAMS),
        ("contents", 5, "InferTensorContents"),
    ],
    "InferRequestedOutputTensor": [("name", 1, _S), ("parameters", 2, _PARAMS)],
    "ModelInferRequest": [
        ("model_name", 1, _S),
        ("model_version", 2, _S),
        ("id", 3, _S),
        ("parameters", 4, _PARAMS),
        ("inputs", 5, "InferInputTensor", True),
        ("outputs", 6, "InferRequestedOutputTensor", True),
        ("raw_input_contents", 7, _BY, True),
    ],
    "InferOutputTensor": [
        ("name", 1, _S),
        ("datatype", 2, _S),
        ("shape", 3, _I64, True),
        ("parameters", 4, _PARAMS),
        ("contents", 5, "InferTensorContents"),
    ],
    "ModelInferResponse": [
        ("model_name", 1, _S),
        ("model_version", 2, _S),
        ("id", 3, _S),
        ("parameters", 4, _PARAMS),
        ("outputs", 5, "InferOutputTensor", True),
        ("raw_output_contents", 6, _BY, True),
    ],
    "ModelConfigRequest": [("name", 1, _S), ("version", 2, _S)],
    "ModelInput": [("name", 1, _S), ("data_type", 2, "enum:DataType"), ("dims", 4, _I64, True)],
    "ModelOutput": [("name", 1, _S), ("data_type", 2, "enum:DataType"), ("dims", 3, _I64, True)],
    "ModelConfig": [
        ("name", 1, _S),
        ("platform", 2, _S),
        ("max_batch_size", 4, _I32),
        ("input", 5, "ModelInput", True),
        ("output", 6, "ModelOutput", True),
    ],
    "ModelConfigResponse": [("config", 1, "ModelConfig")],
}
DATA_TYPES = (
    "TYPE_INVALID",
    "TYPE_BOOL",
    "TYPE_UINT8",
    "TYPE_UINT16",
    "TYPE_UINT32",
    "TYPE_UINT64",
    "TYPE_INT8",
    "TYPE_INT16",
    "TYPE_INT32",
    "TYPE_INT64",
    "TYPE_FP16",
    "TYPE_FP32",
    "TYPE_FP64",
    "TYPE_STRING",
    "TYPE_BF16",
)
PACKAGE = "inference"
# Empty requests are the empty message: any message type decodes them.
RPCS = ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer", "ModelConfig")


def _schema_file():
    proto = descriptor_pb2.FileDescriptorProto(name="fizbuz_inference.proto", package=PACKAGE, syntax="proto3")
    enum = proto.enum_type.add(name="DataType")
    for number, name in enumerate(DATA_TYPES):
        enum.value.add(name=name, number=number)
    for message_name, fields in SCHEMA.items():
        message = proto.message_type.add(name=message_name)
        for name, number, kind, *rest in fields:
            repeated = bool(rest and rest[0])
            entry = message.field.add(name=name, number=number, json_name=name)
            entry.label = entry.LABEL_REPEATED if repeated else entry.LABEL_OPTIONAL
            if rest[1:]:  # a oneof member
                if not message.oneof_decl:
                    message.oneof_decl.add(name=rest[1])
                entry.oneof_index = 0
            if isinstance(kind, int):
                entry.type = kind
            elif kind.startswith("enum:"):
                entry.type, entry.type_name = _E, f".{PACKAGE}.{kind[5:]}"
            elif kind.startswith("map:"):
                map_entry = message.nested_type.add(name=name.title().replace("_", "") + "Entry")
                map_entry.options.map_entry = True
                map_entry.field.add(name="key", number=1, type=_S, label=entry.LABEL_OPTIONAL, json_name="key")
                map_entry.field.add(
                    name="value",
                    number=2,
                    type=_M,
                    label=entry.LABEL_OPTIONAL,
                    type_name=f".{PACKAGE}.{kind[4:]}",
                    json_name="value",
                )
                entry.type, entry.label = _M, entry.LABEL_REPEATED
                entry.type_name = f".{PACKAGE}.{message_name}.{map_entry.name}"
            else:
                entry.type, entry.type_name = _M, f".{PACKAGE}.{kind}"
    return proto


def _message_classes():
    # A pool of our own: the default pool may already hold another "inference" package.
    pool = descriptor_pool.DescriptorPool()
    pool.Add(_schema_file())
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}")) for name in SCHEMA}


MESSAGES = _message_classes()


def grpc_frame(message_bytes):
    """gRPC's length-prefixed message: a 0 byte (not compressed), 4-byte big-endian length."""
    return struct.pack(">BI", 0, len(message_bytes)) + message_bytes


def grpc_unframe(body):
    body = bytes(body)
    if len(body) < 5:
        raise V2Error("the gRPC message is truncated (fewer than 5 bytes)")
    compressed, length = struct.unpack(">BI", body[:5])
    if compressed:
        raise V2Error("compressed gRPC messages are not accepted: call without compression")
    if length != len(body) - 5:
        raise V2Error(f"the gRPC message says {length} bytes, the body holds {len(body) - 5}")
    return body[5:]


def _decode(name, body):
    try:
        return MESSAGES[name].FromString(grpc_unframe(body))
    except V2Error:
        raise
    except Exception as error:  # noqa: BLE001  protobuf's DecodeError and friends: the client's bytes
        raise V2Error(f"the {name} message does not decode: {type(error).__name__}")


def grpc_message(message_type, **values):
    """A framed reply message, e.g. grpc_message("ServerLiveResponse", live=True)."""
    return grpc_frame(MESSAGES[message_type](**values).SerializeToString())


def parse_grpc(body):
    request = _decode("ModelInferRequest", body)
    check_model(request.model_name, request.model_version)
    if len(request.inputs) != 1:
        raise V2Error(f"a request carries one input tensor ({INPUT_NAME!r}), got {len(request.inputs)}")
    tensor = request.inputs[0]
    _check_input_head(tensor.name, tensor.datatype)
    where = f"input {INPUT_NAME!r}"
    count, rank = _count_from_shape(list(tensor.shape), where)
    if request.raw_input_contents:
        if len(request.raw_input_contents) != 1:
            raise V2Error(f"raw_input_contents holds {len(request.raw_input_contents)} tensors, expected 1")
        if tensor.HasField("contents"):
            raise V2Error(f"{where}: give either contents or raw_input_contents, not both")
        values = _from_raw(request.raw_input_contents[0], tensor.datatype, count, where)
    else:
        values = list(getattr(tensor.contents, CONTENTS_FIELD[tensor.datatype]))
        if len(values) != count:
            raise V2Error(
                f"{where}: {len(values)} values in contents.{CONTENTS_FIELD[tensor.datatype]} "
                f"for shape {list(tensor.shape)} ({count} expected)"
            )
    numbers = _numbers_from(values, tensor.datatype, where)
    outputs = [(name, None) for name in OUTPUTS]
    if request.outputs:
        outputs = _requested_outputs((item.name, None) for item in request.outputs)
    timeout = None
    if "timeout" in request.parameters:
        parameter = request.parameters["timeout"]
        timeout = getattr(parameter, parameter.WhichOneof("choice") or "string_param")
    return InferRequest(
        numbers=numbers,
        rank=rank,
        id=request.id,
        has_id=bool(request.id),
        outputs=outputs,
        timeout_us=_timeout(timeout),
    )


def grpc_reply(request, labels, logits):
    """A framed ModelInferResponse; every output in raw_output_contents (what
    tritonclient reads numeric outputs from)."""
    reply = MESSAGES["ModelInferResponse"](model_name=MODEL_NAME, model_version=MODEL_VERSION, id=request.id)
    for name, _ in request.outputs:
        reply.outputs.add(
            name=name, datatype="BYTES" if name == LABEL_OUTPUT else "FP32", shape=_output_shape(name, request)
        )
        reply.raw_output_contents.append(
            _bytes_tensor(labels) if name == LABEL_OUTPUT else logits.astype("<f4").tobytes()
        )
    return grpc_frame(reply.SerializeToString())


# ---------------------------------------------------------------- calls

INFER, READY, ANSWERED = "infer", "ready", "answered"
GRPC_REQUESTS = {
    "ModelReady": "ModelReadyRequest",
    "ModelMetadata": "ModelMetadataRequest",
    "ModelConfig": "ModelConfigRequest",
}


@dataclass
class Call:
    """What one v2 or gRPC call needs from the model: an inference (`request`),
    a readiness prediction, or nothing (`reply`, the finished envelope)."""

    kind: str
    grpc: bool
    request: InferRequest = None
    reply: bytes = b""


def route(protocol, call, body, model="", version="", header_length=None, encoding=""):
    """Parse one call the front door forwarded. REST names the model and version
    in its URL (the door passes them on), gRPC inside the message."""
    grpc = protocol == "grpc"
    if call in GRPC_REQUESTS and grpc:
        message = _decode(GRPC_REQUESTS[call], body)
        model, version = message.name, message.version
    if call == "ModelInfer":
        if grpc:
            return Call(INFER, grpc, request=parse_grpc(body))
        check_model(model, version)
        return Call(INFER, grpc, request=parse_rest(inflate(body, encoding), header_length))
    if call in ("ModelReady", "ModelMetadata", "ModelConfig"):
        check_model(model, version)
    if call in ("ServerReady", "ModelReady"):
        return Call(READY, grpc)
    if call == "ServerMetadata":
        document, message = server_metadata(), "ServerMetadataResponse"
    elif call == "ModelMetadata":
        document, message = model_metadata(), "ModelMetadataResponse"
    elif call == "ModelConfig":
        document, message = {"config": model_config()}, "ModelConfigResponse"
    else:
        raise V2Error(f"{_quote(call)} is not a call of this server", 404)
    if grpc:
        return Call(ANSWERED, grpc, reply=envelope(grpc_message(message, **document), 200, GRPC_TYPE))
    if call == "ModelConfig":
        document = document["config"]  # REST answers the configuration itself (Triton's shape)
    return Call(ANSWERED, grpc, reply=envelope(json.dumps(document).encode(), 200, JSON_TYPE))


def ready_reply(call, ready):
    """Ready when the smoke prediction gave the known answer."""
    if call.grpc:
        return envelope(grpc_message("ServerReadyResponse", ready=ready), 200, GRPC_TYPE)
    if ready:
        return envelope(json.dumps({"ready": True}).encode(), 200, JSON_TYPE)
    return envelope(
        json.dumps({"ready": False, "error": "the smoke prediction gave a wrong answer"}).encode(), 503, JSON_TYPE
    )


def infer_reply(call, labels, logits):
    if call.grpc:
        return envelope(grpc_reply(call.request, labels, logits), 200, GRPC_TYPE)
    payload, header_length = rest_reply(call.request, labels, logits)
    return envelope(payload, 200, BINARY_TYPE if header_length is not None else JSON_TYPE, header_length=header_length)


# ---------------------------------------------------------------- the envelope


def envelope(payload, status=200, content_type=JSON_TYPE, header_length=None, grpc_status=GRPC_OK, grpc_message=""):
    """The handler's reply to the front door: one ASCII line
        FZ1 <status> <content type> <v2 header length or -> <payload length> <grpc-status> <grpc-message or ->
    then the payload. The door copies the values into the status, headers and
    trailers and sends exactly `payload length` bytes on (padding after them is
    the handler's, for MMS's frame decoder)."""
    message = urllib.parse.quote(grpc_message, safe="") if grpc_message else "-"
    head = (
        f"{ENVELOPE_MAGIC} {status} {content_type} {'-' if header_length is None else header_length} "
        f"{len(payload)} {grpc_status} {message}\n"
    )
    return head.encode("ascii") + payload


def error_envelope(error, grpc):
    """A refused request's envelope: a JSON error for REST, a gRPC status for gRPC."""
    if grpc:
        return envelope(b"", 200, GRPC_TYPE, grpc_status=error.grpc_code, grpc_message=str(error))
    return envelope(error_json(str(error)), error.status, JSON_TYPE)


def open_envelope(body):
    """(status, content type, v2 header length or None, payload, grpc-status,
    grpc-message) of a handler's envelope: what door.js reads, for checks that
    talk to a host directly (rollouts, health checks)."""
    body = bytes(body)
    head, _, rest = body.partition(b"\n")
    fields = head.decode("ascii", "replace").split(" ")
    if len(fields) != 7 or fields[0] != ENVELOPE_MAGIC:
        raise ValueError(f"not a handler envelope: {body[:60]!r}")
    length = int(fields[4])
    if len(rest) < length:
        raise ValueError(f"the envelope says {length} bytes of payload, {len(rest)} came")
    message = "" if fields[6] == "-" else urllib.parse.unquote(fields[6])
    return (
        int(fields[1]),
        fields[2],
        None if fields[3] == "-" else int(fields[3]),
        rest[:length],
        int(fields[5]),
        message,
    )


def host_call(numbers, call="ModelInfer"):
    """(headers, body) of a v2 REST call as the front door sends it to a host:
    every number in one JSON request, asking for the labels only."""
    headers = {PROTOCOL_HEADER: "v2", CALL_HEADER: call, MODEL_HEADER: MODEL_NAME, "Content-Type": BINARY_TYPE}
    body = {
        "inputs": [
            {"name": INPUT_NAME, "datatype": "INT64", "shape": [len(numbers), 1], "data": [int(n) for n in numbers]}
        ],
        "outputs": [{"name": LABEL_OUTPUT}],
    }
    return headers, json.dumps(body).encode()


def labels_of_reply(body):
    """The labels of a host's answer to host_call, or ValueError naming what was wrong."""
    status, _, _, payload, _, _ = open_envelope(body)
    if status != 200:
        raise ValueError(f"status {status}: {payload[:100]!r}")
    outputs = json.loads(payload)["outputs"]
    return [label for output in outputs if output["name"] == LABEL_OUTPUT for label in output["data"]]
