"""Send framed-free ModelInfer request messages with grpcio and write back each
call's status code and reply, for bench/v2.py's answer check through the gRPC
path. Runs in the standard clients' venv (.venv-clients: grpcio), which the
project's own venv lacks; it only moves bytes (no protobuf schema here): the
caller builds the requests and reads the replies with fizbuz_v2.MESSAGES.

    python bench/v2_grpc_call.py HOST:PORT CACERT TOKEN REQUESTS REPLIES

REQUESTS: messages, each a 4-byte big-endian length then the serialized
ModelInferRequest. REPLIES: per request, a 4-byte big-endian gRPC status code,
a 4-byte length, then the serialized ModelInferResponse (status 0) or the
status details in UTF-8.
"""

import struct
import sys

METHOD = "/inference.GRPCInferenceService/ModelInfer"
IN_FLIGHT = 16  # calls at once on the one channel (HTTP/2 streams)


def read_messages(data):
    messages, at = [], 0
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        messages.append(data[at + 4 : at + 4 + length])
        at += 4 + length
    return messages


def pack_messages(messages):
    return b"".join(struct.pack(">I", len(m)) + m for m in messages)


def pack_replies(replies):
    return b"".join(struct.pack(">iI", code, len(body)) + body for code, body in replies)


def read_replies(data):
    replies, at = [], 0
    while at < len(data):
        code, length = struct.unpack(">iI", data[at : at + 8])
        replies.append((code, data[at + 8 : at + 8 + length]))
        at += 8 + length
    return replies


def main(argv):
    import grpc  # only in the clients' venv

    target, cacert, token, requests_file, replies_file = argv
    with open(cacert, "rb") as f:
        credentials = grpc.ssl_channel_credentials(f.read())
    with open(requests_file, "rb") as f:
        requests = read_messages(f.read())
    metadata = [("authorization", f"Bearer {token}")]
    replies = []
    with grpc.secure_channel(target, credentials) as channel:
        call = channel.unary_unary(METHOD)  # bytes in, bytes out
        for start in range(0, len(requests), IN_FLIGHT):
            futures = [call.future(r, metadata=metadata, timeout=30) for r in requests[start : start + IN_FLIGHT]]
            for future in futures:
                try:
                    replies.append((0, future.result()))
                except grpc.RpcError as error:
                    replies.append((error.code().value[0], (error.details() or "").encode()))
    with open(replies_file, "wb") as f:
        f.write(pack_replies(replies))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
