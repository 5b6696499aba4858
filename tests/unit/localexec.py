"""The cluster wrapper's exec stream over a local process, for tests of what runs in a probe (its
command channel, its capture script): the process's pipes stand for the exec's channels."""

from __future__ import annotations

import os
import queue
import subprocess
import threading
from pathlib import Path


class LocalStream:
    """`netdoctor.cluster.kube.ExecStream`'s interface over a local process."""

    def __init__(self, command: list[str], env: dict[str, str]):
        self._proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      env=env)
        self._out: queue.Queue = queue.Queue()
        self._stderr = bytearray()
        threading.Thread(target=self._pump, args=(self._proc.stdout, self._out.put), daemon=True).start()
        threading.Thread(target=self._pump, args=(self._proc.stderr, self._stderr.extend), daemon=True).start()
        self._eof = False

    @staticmethod
    def _pump(pipe, sink) -> None:
        while chunk := os.read(pipe.fileno(), 65536):
            sink(chunk)
        sink(b"")

    def read(self, timeout: float) -> bytes:
        got = bytearray()
        try:
            chunk = self._out.get(timeout=max(timeout, 0.001))
            while True:
                self._eof = self._eof or chunk == b""
                got += chunk
                chunk = self._out.get_nowait()
        except queue.Empty:
            return bytes(got)

    def write(self, data: bytes) -> None:
        self._proc.stdin.write(data)
        self._proc.stdin.flush()

    def close_stdin(self) -> None:
        self._proc.stdin.close()

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        self._eof = True

    @property
    def closed(self) -> bool:
        return self._eof and self._proc.poll() is not None

    @property
    def stderr(self) -> bytes:
        return bytes(self._stderr)

    @property
    def returncode(self) -> int | None:
        return self._proc.poll()

    error = None

    def __enter__(self) -> "LocalStream":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class LocalKube:
    """The cluster wrapper's exec_stream, run on this machine; `tmpdir` is the "container's" /tmp."""

    def __init__(self, tmpdir: Path):
        self.env = dict(os.environ, TMPDIR=str(tmpdir))
        self.stopping = False
        self.streams: list[LocalStream] = []

    def exec_stream(self, namespace, pod, command, container=None, *, stdin=False):
        self.streams.append(LocalStream(command, self.env))
        return self.streams[-1]
