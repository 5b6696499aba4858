"""Exec over WebSocket with the Kubernetes channel protocols (v4/v5.channel.k8s.io, channel.k8s.io).

The server hands an upgraded connection and the runtime's process here. One thread multiplexes
the process's stdout/stderr (binary-exact, as produced) and the client's frames, so the TLS socket
is never used from two threads; a helper thread feeds stdin. The status on channel 3 copies the
real API server's JSON.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import select
import socket
import subprocess
import threading
from collections.abc import Callable

from netdoctor.lab.api.websocket import BINARY, CLOSE, TEXT, Connection, ProtocolError

SUBPROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io")
STDIN, STDOUT, STDERR, ERROR, RESIZE, CLOSE_CHANNEL = 0, 1, 2, 3, 4, 255
_READ_SIZE = 64 * 1024


class SocketReader:
    """Exact-size reads from a (TLS) socket, and whether a read would find data at once."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._buffer = b""

    def fileno(self) -> int:
        return self._sock.fileno()

    def has_buffered(self) -> bool:
        pending = getattr(self._sock, "pending", lambda: 0)
        return bool(self._buffer) or pending() > 0

    def read(self, size: int) -> bytes:
        while len(self._buffer) < size:
            chunk = self._sock.recv(max(size - len(self._buffer), _READ_SIZE))
            if not chunk:
                break
            self._buffer += chunk
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data


def success_status() -> dict:
    return {"metadata": {}, "status": "Success"}


def exit_code_status(code: int) -> dict:
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"command terminated with non-zero exit code: command terminated with exit code {code}",
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": str(code)}]},
    }


def missing_binary_status(binary: str) -> dict:
    detail = (
        f'error executing command in container: failed to exec in container: failed to start exec "{secrets.token_hex(32)}": '
        f'OCI runtime exec failed: exec failed: unable to start container process: exec: "{binary}": '
        "executable file not found in $PATH: unknown"
    )
    return {
        "metadata": {},
        "status": "Failure",
        "message": f"Internal error occurred: {detail}",
        "reason": "InternalError",
        "details": {"causes": [{"message": detail}]},
        "code": 500,
    }


class _StdinFeeder:
    """Writes client stdin to the process from its own thread, so a full pipe never stalls output."""

    def __init__(self, pipe):
        self._queue: queue.Queue[bytes | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, args=(pipe,), daemon=True, name="exec-stdin")
        self._thread.start()

    def write(self, data: bytes) -> None:
        self._queue.put(data)

    def close(self) -> None:
        self._queue.put(None)

    def _run(self, pipe) -> None:
        try:
            while (data := self._queue.get()) is not None:
                pipe.write(data)
                pipe.flush()
        except BrokenPipeError:
            pass  # the process exited or closed its stdin: later input has nowhere to go, as in a container
        finally:
            _close_quietly(pipe)


def _close_quietly(pipe) -> None:
    try:
        pipe.close()
    except BrokenPipeError:
        pass  # flushing buffered input into a process that is gone; nothing left to deliver


def run_exec(conn: Connection, reader: SocketReader, start: Callable[[], subprocess.Popen], binary: str,
             channels: frozenset[int], protocol: str | None) -> None:
    """Run the process from `start()`, stream it over conn, then send the status and close."""
    try:
        proc = start()
    except FileNotFoundError:
        _finish(conn, missing_binary_status(binary))
        return
    feeder = _StdinFeeder(proc.stdin) if proc.stdin else None
    outputs = {p.fileno(): (p, ch) for p, ch in ((proc.stdout, STDOUT), (proc.stderr, STDERR)) if p is not None}
    try:
        client_open = _pump(conn, reader, outputs, feeder, channels, protocol)
    finally:
        if feeder:
            feeder.close()
        for pipe, _ in outputs.values():
            pipe.close()
    if not client_open:
        proc.kill()
        proc.wait()
        return
    code = proc.wait()
    code = code if code >= 0 else 128 - code
    _finish(conn, success_status() if code == 0 else exit_code_status(code))


def _pump(conn: Connection, reader: SocketReader, outputs: dict, feeder: _StdinFeeder | None,
          channels: frozenset[int], protocol: str | None) -> bool:
    """Stream outputs until both reach EOF; False when the client went away first."""
    open_fds = dict(outputs)
    while open_fds:
        ready = [reader] if reader.has_buffered() else select.select([reader, *open_fds], [], [])[0]
        for source in ready:
            if source is reader:
                if not _client_message(conn, feeder, protocol):
                    return False
                continue
            data = os.read(source, _READ_SIZE)
            _, channel = open_fds[source]
            if not data:
                del open_fds[source]
            elif channel in channels:
                conn.send(bytes([channel]) + data)
    return True


def _client_message(conn: Connection, feeder: _StdinFeeder | None, protocol: str | None) -> bool:
    try:
        opcode, payload = conn.receive()
    except (ProtocolError, ConnectionError):
        return False  # the client hung up without a close frame: same as closing
    if opcode == CLOSE:
        return False
    if opcode not in (BINARY, TEXT) or not payload:
        return True
    channel, data = payload[0], payload[1:]
    if channel == STDIN and feeder and data:
        feeder.write(data)
    elif channel == CLOSE_CHANNEL and protocol == SUBPROTOCOLS[0] and data[:1] == bytes([STDIN]) and feeder:
        feeder.close()
    return True


def _finish(conn: Connection, status: dict) -> None:
    conn.send(bytes([ERROR]) + json.dumps(status, separators=(",", ":")).encode())
    conn.close()
