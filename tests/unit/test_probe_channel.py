"""A probe's command channel (netdoctor.probe.channel) against the real dispatcher: bash runs it
in a local process, whose pipes stand for the exec stream the cluster wrapper would hand over."""

from __future__ import annotations

import socket
import threading

import pytest

from netdoctor.cluster.objects import Pod
from netdoctor.observations import ExecErrorKind, TcpOutcome
from netdoctor.probe.channel import Channel, ChannelUnavailable
from netdoctor.probe.fleet import Probe, ProbeSpec

from localexec import LocalKube


@pytest.fixture
def kube(tmp_path):
    return LocalKube(tmp_path)


@pytest.fixture
def channel(kube):
    opened = Channel.open(kube, "demo", "probe")
    yield opened
    opened.close()


def test_each_command_gets_its_own_exit_code_stdout_and_stderr(channel):
    result = channel.run(["bash", "-c", "echo out; printf 'two\\nlines'; echo err >&2; exit 3"], 5)
    assert (result.exit_code, result.stdout, result.stderr, result.error) == (3, b"out\ntwo\nlines", b"err\n", None)
    empty = channel.run(["true"], 5)
    assert (empty.exit_code, empty.stdout, empty.stderr) == (0, b"", b"")


def test_commands_run_at_once_and_each_answer_comes_when_its_command_ends(channel, tmp_path):
    gate = tmp_path / "gate"
    slow: dict = {}
    waiting = threading.Thread(target=lambda: slow.update(r=channel.run(
        ["bash", "-c", f"until [ -e {gate} ]; do sleep 0.01; done; echo slow"], 10)))
    waiting.start()
    fast = channel.run(["echo", "fast"], 5)  # answered while the first still waits for the gate
    assert fast.stdout == b"fast\n" and waiting.is_alive()
    gate.touch()
    waiting.join(10)
    assert slow["r"].stdout == b"slow\n"


def test_arguments_reach_the_command_as_they_were(channel):
    tricky = ["printf", "%s|", "a b", "it's", '"q"', "$HOME", "`x`", "new\nline", ""]
    assert channel.run(tricky, 5).stdout == "a b|it's|\"q\"|$HOME|`x`|new\nline||".encode()


def test_output_that_looks_like_a_frame_is_only_output(channel):
    fake = "@@0000000000000000 1 0\nx\n@@0000000000000000 1\n\n@@0000000000000000 1 .\n"
    assert channel.run(["printf", "%s", fake], 5).stdout == fake.encode()
    assert channel.run(["echo", "next"], 5).stdout == b"next\n"


def test_a_missing_executable_is_reported_as_the_runtime_would(channel):
    result = channel.run(["no-such-tool-here", "-x"], 5)
    assert result.exit_code is None and result.error.kind is ExecErrorKind.MISSING_BINARY
    assert result.error.binary == "no-such-tool-here"


def test_a_command_past_its_deadline_times_out_and_the_channel_goes_on(channel):
    late = channel.run(["sleep", "3"], 0.2)
    assert late.error.kind is ExecErrorKind.TIMEOUT
    assert channel.run(["echo", "still here"], 5).stdout == b"still here\n"


def test_commands_waiting_when_the_channel_breaks_get_its_end_not_a_hang(kube, channel):
    answers: list = []
    waiting = threading.Thread(target=lambda: answers.append(channel.run(["sleep", "5"], 10)))
    waiting.start()
    kube.streams[0].close()  # the exec stream is gone (pod deleted, API server restarted)
    waiting.join(5)
    assert answers and answers[0].error.kind is ExecErrorKind.CONNECTION_LOST
    assert channel.run(["echo", "x"], 5).error.kind is ExecErrorKind.CONNECTION_LOST


def test_no_channel_where_the_dispatcher_cannot_start(tmp_path):
    kube = LocalKube(tmp_path / "no-such-dir")  # mktemp fails: as in a read-only container
    with pytest.raises(ChannelUnavailable, match="mktemp"):
        Channel.open(kube, "demo", "probe")


def test_closing_ends_the_dispatcher_and_removes_its_files(kube, tmp_path):
    opened = Channel.open(kube, "demo", "probe")
    assert opened.run(["echo", "x"], 5).stdout == b"x\n"
    assert any(tmp_path.iterdir())
    opened.close()
    kube.streams[0]._proc.wait(5)
    assert kube.streams[0].returncode == 0 and not any(tmp_path.iterdir())


def test_a_probe_sends_all_its_commands_over_one_exec(kube):
    pod = Pod.from_api({"metadata": {"name": "netdoctor-abc-source", "namespace": "demo"}, "status": {"podIP": "10.0.0.9"}})
    probe = Probe(kube, ProbeSpec("source", "demo"), pod)
    probe.connect()
    answers = [probe.exec(["echo", str(n)], 5).stdout for n in range(5)]
    with socket.socket() as listener:  # a port nothing listens on once this closes
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
    assert probe.tcp_connect("127.0.0.1", port, 2.0, attempts=3)[0].outcome is TcpOutcome.REFUSED
    probe.close()
    assert answers == [f"{n}\n".encode() for n in range(5)] and len(kube.streams) == 1
    kube.streams[0]._proc.wait(5)
