"""DUMP/RESTORE payloads of the module's tensor type, built byte by byte, to
feed the module's rdb_load what a hostile client or a damaged file could.

A module value's serialisation (RDB_TYPE_MODULE_2) is: the type byte, the
module type id, then each saved field as an opcode and its value, then an EOF
opcode. A DUMP payload adds the RDB version (2 bytes) and a CRC-64 (Jones,
reflected, little-endian) of everything before it. Lengths and unsigned
numbers use Redis's length encoding. `check_encoder` proves this encoder
against the server's own DUMP of a tensor before a test trusts it."""

import struct

OPCODE_EOF, OPCODE_UINT, OPCODE_STRING = 0, 2, 5
HEADER_BYTES = 10  # type byte + the module type id (a 64-bit length: 0x81 and 8 bytes)
FOOTER_BYTES = 10  # RDB version + CRC-64


def _crc_table():
    poly = 0x95AC9329AC4BC9B5  # Jones's polynomial, bits reversed
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return table


_TABLE = _crc_table()


def crc64(data):
    crc = 0
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


assert crc64(b"123456789") == 0xE9C6D914C4B8D9CA  # the check value Redis's own tests use


def rdb_len(n):
    if n < 1 << 6:
        return bytes([n])
    if n < 1 << 14:
        return bytes([0x40 | n >> 8, n & 0xFF])
    if n <= 0xFFFFFFFF:
        return b"\x80" + struct.pack(">I", n)
    return b"\x81" + struct.pack(">Q", n)


def uint(n):
    return rdb_len(OPCODE_UINT) + rdb_len(n)


def string(data):
    return rdb_len(OPCODE_STRING) + rdb_len(len(data)) + data


def tensor_body(header, dtype_index, dims, data, ndims=None):
    """A tensor value: dtype index, dim count (`ndims` to lie about it), dims, data."""
    body = header + uint(dtype_index) + uint(len(dims) if ndims is None else ndims)
    for d in dims:
        body += uint(d)
    return body + string(data) + rdb_len(OPCODE_EOF)


def payload(body, version):
    """A DUMP payload around `body`, with a right CRC so that RESTORE hands it to the module."""
    framed = body + version
    return framed + struct.pack("<Q", crc64(framed))


class Envelope:
    """The header (type byte + module type id) and RDB version of a real DUMP
    of one of the module's values."""

    def __init__(self, dump):
        self.header = dump[:HEADER_BYTES]
        self.version = dump[-FOOTER_BYTES : -FOOTER_BYTES + 2]
        self.body = dump[:-FOOTER_BYTES]

    def truncated(self, keep):
        """The real value cut after `keep` bytes of its body, framed as a valid payload."""
        return payload(self.body[:keep], self.version)


def check_encoder(dump, dtype_index, dims, data):
    """The server's DUMP of a tensor equals what this module's encoder builds."""
    env = Envelope(dump)
    assert payload(tensor_body(env.header, dtype_index, dims, data), env.version) == dump
    return env


def rdb_string(data):
    return rdb_len(len(data)) + data


def rdb_file(key, body):
    """A whole RDB file (version 10, Redis 7.0) holding one module value, whose
    DUMP-style `body` starts with the type byte: the key goes after that byte."""
    content = b"REDIS0010" + b"\xfe\x00" + body[:1] + rdb_string(key) + body[1:] + b"\xff"
    return content + struct.pack("<Q", crc64(content))
