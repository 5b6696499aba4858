"""A probe's commands over one exec, instead of an exec each.

Used by `netdoctor.probe.fleet.Probe.exec`: the runner opens each probe's channel as soon as the
probes run (while the captures start), and every step's command then reaches its probe through it.
An exec costs a connection through the API server to the kubelet and the runtime: a check's ~25
become one per probe, the steps start without waiting for theirs, and the API server carries a
fraction of the streams.

The channel runs DISPATCHER with bash in the probe (its TCP and DNS commands need bash anyway). It reads
commands on its stdin, each as id, executable and shell-quoted command line, NUL-separated; runs
each in the background at once, its output in files of a private temporary directory; and one
writer prints every finished command as a frame on stdout:

    @@<token> <id> <exit code, or "missing">\\n<stdout>\\n@@<token> <id>\\n<stderr>\\n@@<token> <id> .\\n

`token` is drawn at random for each channel, so no output can pass for a frame. "missing" is an
executable the probe does not have, returned as the runtime's own MISSING_BINARY error would be.
Outputs come back as text (bash reads them: a NUL byte would end one; the probe commands print text).
A channel that cannot start (no bash, no writable temporary directory, exec refused) raises
`ChannelUnavailable`, and the probe goes on with an exec per command.
"""

from __future__ import annotations

import itertools
import secrets
import shlex
import threading
import time
from concurrent.futures import Future, TimeoutError as FutureTimeout

from netdoctor.cluster.kube import EXEC_SLICE, ExecStream, Kube
from netdoctor.errors import NetdoctorError
from netdoctor.observations import ExecError, ExecErrorKind, ExecResult

READY_TIMEOUT = 5.0  # seconds for the dispatcher to start and say so (then: an exec per command)
POLL = 0.05  # seconds the reader waits for output before it looks whether the channel should end
CLOSE_GRACE = 5.0  # seconds a closed channel's dispatcher has to end by itself (its commands' timeouts)
DISPATCHER = r"""
tok=$1
d=$(mktemp -d) || exit 97
trap 'rm -rf "$d"' EXIT
exec {frames}> >(while read -r id rc; do
  IFS= read -r -d '' out <"$d/$id.o"; IFS= read -r -d '' err <"$d/$id.e"
  printf '@@%s %s %s\n%s\n@@%s %s\n%s\n@@%s %s .\n' "$tok" "$id" "$rc" "$out" "$tok" "$id" "$err" "$tok" "$id"
done)
writer=$!
jobs=()
printf '@@%s ready\n' "$tok"
while IFS= read -r -d '' id && IFS= read -r -d '' bin && IFS= read -r -d '' cmd; do
  if command -v -- "$bin" >/dev/null 2>&1; then
    { eval "$cmd" </dev/null >"$d/$id.o" 2>"$d/$id.e"; echo "$id $?" >&"$frames"; } &
    jobs+=($!)
  else
    : >"$d/$id.o"; : >"$d/$id.e"; echo "$id missing" >&"$frames"
  fi
done
((${#jobs[@]})) && wait "${jobs[@]}"
exec {frames}>&-
wait "$writer"
"""


class ChannelUnavailable(NetdoctorError):
    """The dispatcher did not start in the probe: commands go by an exec each."""


class Channel:
    """One probe's running dispatcher. `run` is called from many threads at once; one reader
    thread hands each frame to the command waiting for it."""

    def __init__(self, stream: ExecStream, token: str, kube: Kube, what: str):
        self._stream, self._kube, self._what = stream, kube, what
        self._mark = f"@@{token}".encode()
        self._buffer = bytearray()
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[Future, str]] = {}
        self._lock = threading.Lock()  # the pending commands, and the stream's stdin
        self._ended: str | None = None  # why no command can be answered any more
        self._closing_since: float | None = None  # when `close` was called
        self._reader = threading.Thread(target=self._read, name=f"channel {what}", daemon=True)

    @classmethod
    def open(cls, kube: Kube, namespace: str, pod: str, container: str = "probe") -> Channel:
        """Start the dispatcher and wait until it says it runs; ChannelUnavailable if it does not."""
        token = secrets.token_hex(8)
        command = ["bash", "-c", DISPATCHER, "netdoctor-channel", token]
        stream = kube.exec_stream(namespace, pod, command, container, stdin=True)
        channel = cls(stream, token, kube, f"{namespace}/{pod}")
        try:
            channel._wait_ready()
        except BaseException:
            stream.close()
            raise
        channel._reader.start()
        return channel

    def run(self, command: list[str], timeout: float) -> ExecResult:
        """As `Kube.exec`: the command's exit code and output, or why there are none."""
        answer: Future = Future()
        with self._lock:
            if self._ended is not None:
                return _failed(ExecErrorKind.CONNECTION_LOST, self._ended)
            key = next(self._ids)
            self._pending[key] = (answer, command[0])
            self._stream.write(f"{key}\0{command[0]}\0{shlex.join(command)}\0".encode())
        deadline = time.monotonic() + timeout
        while True:
            if self._kube.stopping:
                self._forget(key)
                return _failed(ExecErrorKind.FAILURE, "interrupted")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._forget(key)
                return _failed(ExecErrorKind.TIMEOUT, f"{command[0]} did not finish within {timeout:g}s")
            try:
                return answer.result(min(remaining, EXEC_SLICE))
            except FutureTimeout:
                continue

    def close(self) -> None:
        """End the dispatcher's input: it exits once its commands in flight have ended, and the
        stream with it; after CLOSE_GRACE the stream is closed anyway. Answers still awaited
        come back as errors."""
        with self._lock:
            self._stream.close_stdin()
            self._closing_since = time.monotonic()

    # ------------------------------------------------------------ reading

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        ready = self._mark + b" ready\n"
        while not self._buffer.startswith(ready):
            if self._stream.closed or time.monotonic() > deadline or not ready.startswith(bytes(self._buffer)):
                raise ChannelUnavailable(f"no command channel in {self._what}: {self._why_not()}")
            self._buffer += self._stream.read(POLL)
        del self._buffer[:len(ready)]

    def _why_not(self) -> str:
        error = self._stream.error
        if error is not None:
            return error.message
        stderr = self._stream.stderr.decode(errors="replace").strip()
        return stderr.splitlines()[-1] if stderr else f"the dispatcher exited with {self._stream.returncode}" \
            if self._stream.closed else "the dispatcher did not start"

    def _read(self) -> None:
        while not self._stream.closed and not self._kube.stopping and not self._given_up():
            self._take(self._stream.read(POLL))
        if not self._stream.closed:
            self._stream.close()
        self._take(self._stream.read(0))
        self._end("the channel was closed" if self._closing_since is not None else
                  f"the probe's command channel ended: {self._stream.error.message if self._stream.error else 'closed'}")

    def _given_up(self) -> bool:
        return self._closing_since is not None and time.monotonic() > self._closing_since + CLOSE_GRACE

    def _take(self, data: bytes) -> None:
        self._buffer += data
        while (frame := self._frame()) is not None:
            key, code, stdout, stderr = frame
            with self._lock:
                waiting = self._pending.pop(key, None)
            if waiting is not None:
                answer, binary = waiting
                answer.set_result(_result(code, stdout, stderr, binary))

    def _frame(self) -> tuple[int, bytes, bytes, bytes] | None:
        """The first complete frame, taken from the buffer; None until one is complete."""
        end = self._buffer.find(b"\n")
        if end < 0:
            return None
        head = bytes(self._buffer[:end]).split(b" ")
        if len(head) != 3 or head[0] != self._mark or not head[1].isdigit() or \
                not (head[2].isdigit() or head[2] == b"missing"):
            self._end(f"the probe's command channel sent an unreadable frame: {bytes(self._buffer[:80])!r}")
            self._buffer.clear()
            return None
        out_mark = b"\n" + self._mark + b" " + head[1] + b"\n"
        err_mark = b"\n" + self._mark + b" " + head[1] + b" .\n"
        out_end = self._buffer.find(out_mark, end + 1)
        err_end = self._buffer.find(err_mark, out_end + len(out_mark)) if out_end >= 0 else -1
        if err_end < 0:
            return None
        stdout = bytes(self._buffer[end + 1:out_end])
        stderr = bytes(self._buffer[out_end + len(out_mark):err_end])
        del self._buffer[:err_end + len(err_mark)]
        return int(head[1]), head[2], stdout, stderr

    def _forget(self, key: int) -> None:
        with self._lock:
            self._pending.pop(key, None)

    def _end(self, why: str) -> None:
        with self._lock:
            if self._ended is None:
                self._ended = why
            waiting, self._pending = list(self._pending.values()), {}
        for answer, _ in waiting:
            answer.set_result(_failed(ExecErrorKind.CONNECTION_LOST, why))


def _result(code: bytes, stdout: bytes, stderr: bytes, binary: str) -> ExecResult:
    if code == b"missing":
        return _failed(ExecErrorKind.MISSING_BINARY, f'exec: "{binary}": executable file not found in $PATH', binary)
    return ExecResult(int(code), stdout, stderr)


def _failed(kind: ExecErrorKind, message: str, binary: str | None = None) -> ExecResult:
    return ExecResult(None, b"", b"", ExecError(kind, message, binary))
