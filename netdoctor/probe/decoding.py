"""Decoding the captures in a worker process beside the check's own.

Started by check.command as soon as the arguments are checked (the runner starts one for a run
given none) and closed with the command; the capture sessions (netdoctor.probe.capture) take their
decoders from it. The worker
(`python -m netdoctor.probe.decoding`) runs one `netdoctor.probe.pcap.Decoder` per capture stream
as the bytes stream in, and sends each stream's packets back, pickled, when the capture ends.
Importing scapy (~0.3 s of CPU) and dissecting (~0.1 ms a packet) then run on another core,
instead of holding the check's interpreter lock while its threads read the probes' output and
the steps' results. A worker that fails makes the captures it had unreadable (their points go
blind with the reason), never the check.

Frames both ways: operation (1 byte), stream (4), length (4), payload. To the worker: FEED (pcap
bytes), FINISH (the host's interface names, JSON); back: PACKETS (a pickled tuple of Packets) or
FAILED (the decoder's ValueError, one line).
"""

from __future__ import annotations

import itertools
import json
import os
import pickle
import queue
import signal
import struct
import subprocess
import sys
import threading
from concurrent.futures import Future, TimeoutError as FutureTimeout
from typing import BinaryIO, Mapping

from netdoctor.observations import Packet

FEED, FINISH, PACKETS, FAILED = 1, 2, 3, 4
_FRAME = struct.Struct("!BII")
ANSWER_TIMEOUT = 60.0  # seconds for the worker to decode what it was sent (20,000 packets take ~2 s)


class DecoderProcess:
    """The worker process of one run. Use as a context manager: leaving it ends the worker."""

    def __init__(self):
        self._proc = subprocess.Popen([sys.executable, "-m", "netdoctor.probe.decoding"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._ids = itertools.count(1)
        self._outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._answers: dict[int, Future] = {}
        self._lock = threading.Lock()
        self._ended: str | None = None  # why the worker can no longer answer
        threading.Thread(target=self._write, name="decoder input", daemon=True).start()
        threading.Thread(target=self._read, name="decoder output", daemon=True).start()

    def __enter__(self) -> DecoderProcess:
        return self

    def __exit__(self, *exc_info) -> None:
        """The captures have had their answers (or gone blind) by now: nothing is left to decode."""
        self._outbox.put(None)
        self._proc.kill()
        self._proc.wait()

    def decoder(self) -> RemoteDecoder:
        """A decoder for one capture stream."""
        return RemoteDecoder(self, next(self._ids))

    def send(self, operation: int, stream: int, payload: bytes) -> None:
        """Queued: a capture's reader never waits for the worker."""
        self._outbox.put(_FRAME.pack(operation, stream, len(payload)) + payload)

    def finish(self, stream: int, names: Mapping[int, str]) -> Future:
        """The stream's packets, once the worker has decoded everything sent before."""
        answer: Future = Future()
        with self._lock:
            if self._ended is not None:
                answer.set_exception(ValueError(self._ended))
                return answer
            self._answers[stream] = answer
        self.send(FINISH, stream, json.dumps({str(k): v for k, v in names.items()}).encode())
        return answer

    def _write(self) -> None:
        pipe = self._proc.stdin
        try:
            while (frame := self._outbox.get()) is not None:
                pipe.write(frame)
                pipe.flush()
        except OSError:  # the worker is gone: `_read` tells the waiting streams why
            pass
        finally:
            try:
                pipe.close()
            except OSError:
                pass

    def _read(self) -> None:
        for operation, stream, payload in _frames(self._proc.stdout):
            with self._lock:
                answer = self._answers.pop(stream, None)
            if answer is None:
                continue
            if operation == PACKETS:
                answer.set_result(pickle.loads(payload))
            else:
                answer.set_exception(ValueError(payload.decode(errors="replace")))
        self._end(f"the decoding process ended (exit code {self._proc.wait()}): "
                  f"{_last_line(self._proc.stderr.read()) or 'no message'}")

    def _end(self, why: str) -> None:
        with self._lock:
            self._ended = why
            waiting, self._answers = list(self._answers.values()), {}
        for answer in waiting:
            answer.set_exception(ValueError(why))


class RemoteDecoder:
    """`pcap.Decoder`'s interface for one capture stream, decoded by the worker."""

    def __init__(self, process: DecoderProcess, stream: int):
        self._process, self._stream = process, stream
        self._data = bytearray()

    @property
    def data(self) -> bytes:
        """Every byte fed, as captured."""
        return bytes(self._data)

    def feed(self, chunk: bytes) -> None:
        if chunk:
            self._data += chunk
            self._process.send(FEED, self._stream, chunk)

    def packets(self, names: Mapping[int, str]) -> tuple[Packet, ...]:
        """As `pcap.Decoder.packets`; ValueError also when the worker failed or did not answer."""
        try:
            return self._process.finish(self._stream, names).result(ANSWER_TIMEOUT)
        except FutureTimeout:  # the builtin TimeoutError from Python 3.11 on, its own class in 3.10
            raise ValueError(f"the decoding process did not answer within {ANSWER_TIMEOUT:g}s") from None


def _frames(pipe: BinaryIO):
    """(operation, stream, payload) until the pipe ends (a frame cut short ends it too)."""
    while len(head := pipe.read(_FRAME.size)) == _FRAME.size:
        operation, stream, length = _FRAME.unpack(head)
        payload = pipe.read(length)
        if len(payload) < length:
            return
        yield operation, stream, payload


def _last_line(raw: bytes) -> str:
    lines = [line.strip() for line in raw.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def serve(source: BinaryIO, sink: BinaryIO) -> None:
    """The worker: decode each stream as it is fed, answer each FINISH in turn; scapy is imported
    in a thread meanwhile (a Decoder keeps what it is fed until then)."""
    from netdoctor.probe import pcap

    threading.Thread(target=pcap.preload, name="scapy import", daemon=True).start()
    decoders: dict[int, pcap.Decoder] = {}
    seen: dict = {}  # one packet met at several capture points is dissected once
    for operation, stream, payload in _frames(source):
        if operation == FEED:
            decoders.setdefault(stream, pcap.Decoder(seen)).feed(payload)
        elif operation == FINISH:
            names = {int(k): v for k, v in json.loads(payload).items()}
            try:
                answer = PACKETS, pickle.dumps(decoders.pop(stream, pcap.Decoder()).packets(names))
            except ValueError as exc:
                answer = FAILED, str(exc).encode()
            sink.write(_FRAME.pack(answer[0], stream, len(answer[1])) + answer[1])
            sink.flush()


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C at a terminal is the check's to handle; this ends with its input
    serve(sys.stdin.buffer, sys.stdout.buffer)
    os._exit(0)  # every answer is flushed: skip tearing down scapy's modules (an orphan ends at once)
