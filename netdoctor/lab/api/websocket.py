"""Minimal server-side WebSocket (RFC 6455): handshake values and frame reading/writing.

Used by the exec/attach streaming in `streaming.py` over the server's (TLS) connection. Frames
from clients are masked; ours are not. Fragmented messages are reassembled.
"""

from __future__ import annotations

import base64
import hashlib
import struct
import threading
from typing import BinaryIO

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0
NORMAL_CLOSURE = 1000
MAX_MESSAGE = 16 * 1024 * 1024


class ProtocolError(Exception):
    """The peer broke the WebSocket protocol or hung up mid-frame."""


def accept_key(client_key: str) -> str:
    return base64.b64encode(hashlib.sha1((client_key.strip() + GUID).encode()).digest()).decode()


def choose_subprotocol(offered: str | None, supported: tuple[str, ...]) -> str | None:
    """The first protocol the client offers that we support (the client's preference wins)."""
    for proto in (p.strip() for p in (offered or "").split(",")):
        if proto in supported:
            return proto
    return None


class Connection:
    """One upgraded connection: thread-safe sends, single-reader receives."""

    def __init__(self, reader: BinaryIO, writer: BinaryIO):
        self._reader = reader
        self._writer = writer
        self._send_lock = threading.Lock()

    def send(self, payload: bytes, opcode: int = BINARY) -> None:
        header = bytes([0x80 | opcode])
        size = len(payload)
        if size < 126:
            header += bytes([size])
        elif size < 1 << 16:
            header += bytes([126]) + struct.pack("!H", size)
        else:
            header += bytes([127]) + struct.pack("!Q", size)
        with self._send_lock:
            self._writer.write(header + payload)
            self._writer.flush()

    def close(self, code: int = NORMAL_CLOSURE) -> None:
        self.send(struct.pack("!H", code), CLOSE)

    def receive(self) -> tuple[int, bytes]:
        """The next message (opcode, payload); answers pings itself. CLOSE when the peer closes."""
        opcode, chunks = None, []
        while True:
            fin, frame_op, payload = self._frame()
            if frame_op == PING:
                self.send(payload, PONG)
                continue
            if frame_op == PONG:
                continue
            if frame_op == CLOSE:
                return CLOSE, payload
            if opcode is None:
                opcode = frame_op
            chunks.append(payload)
            if sum(map(len, chunks)) > MAX_MESSAGE:
                raise ProtocolError("message too large")
            if fin:
                return opcode, b"".join(chunks)

    def _frame(self) -> tuple[bool, int, bytes]:
        first, second = self._exact(2)
        size = second & 0x7F
        if size == 126:
            size = struct.unpack("!H", self._exact(2))[0]
        elif size == 127:
            size = struct.unpack("!Q", self._exact(8))[0]
        if size > MAX_MESSAGE:
            raise ProtocolError("frame too large")
        mask = self._exact(4) if second & 0x80 else None
        payload = self._exact(size)
        if mask:
            payload = _unmask(payload, mask)
        return bool(first & 0x80), first & 0x0F, payload

    def _exact(self, size: int) -> bytes:
        data = self._reader.read(size) if size else b""
        if len(data) != size:
            raise ProtocolError("connection closed mid-frame")
        return data


def _unmask(payload: bytes, mask: bytes) -> bytes:
    key = int.from_bytes((mask * (len(payload) // 4 + 1))[: len(payload)], "big")
    return (int.from_bytes(payload, "big") ^ key).to_bytes(len(payload), "big")
