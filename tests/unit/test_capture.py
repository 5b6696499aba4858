"""netdoctor.probe.capture's tcpdump filter and command, run for real: the filter is compiled by tcpdump
and applied to crafted packets in a pcap file (no capture, no network); the capture script is run
with a stand-in tcpdump (no root) and, as root, with the real one on an address nobody uses."""

from __future__ import annotations

import os
import signal
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from netdoctor.probe import capture, pcap

TCPDUMP = shutil.which("tcpdump")
needs_tcpdump = pytest.mark.skipif(TCPDUMP is None, reason="tcpdump is not installed")

PROBES = ["10.244.1.60", "10.244.2.20"]
NODE_1, NODE_2 = "172.30.0.1", "172.30.0.2"


@needs_tcpdump
def test_the_filter_compiles_with_tcpdump():
    bpf = capture.capture_filter(PROBES + ["10.244.1.60"])  # duplicates are fine
    assert bpf.count("host 10.244.1.60") == 1
    done = subprocess.run([TCPDUMP, "-d", "-i", "lo", bpf], capture_output=True, text=True, timeout=10, check=False)
    assert done.returncode == 0, done.stderr
    assert "ret" in done.stdout


def crafted():
    """(name, packet, should match) for the filter on PROBES."""
    from scapy.contrib.geneve import GENEVE
    from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR
    from scapy.layers.l2 import Ether
    from scapy.layers.vxlan import VXLAN

    def inner(src, dst, flags="S", options=()):
        return Ether(src="aa:00:00:00:00:01", dst="aa:00:00:00:00:02") / IP(src=src, dst=dst, options=list(options)) \
            / TCP(sport=40000, dport=8080, flags=flags)

    def outer(payload, port=8472):
        return Ether() / IP(src=NODE_1, dst=NODE_2) / UDP(sport=51000, dport=port) / payload

    return [
        ("plain from a probe", Ether() / IP(src="10.244.1.60", dst="10.96.0.20") / TCP(sport=40000, dport=80), True),
        ("plain to a probe", Ether() / IP(src="10.244.2.99", dst="10.244.2.20") / ICMP(), True),
        ("plain others", Ether() / IP(src="10.244.2.99", dst="10.244.1.98") / TCP(sport=1, dport=2), False),
        ("node to node", Ether() / IP(src=NODE_1, dst=NODE_2) / TCP(sport=10250, dport=6443), False),
        ("vxlan 8472 inner src", outer(VXLAN(vni=1) / inner("10.244.1.60", "10.244.2.99")), True),
        ("vxlan 8472 inner dst", outer(VXLAN(vni=1) / inner("10.244.1.98", "10.244.2.20")), True),
        ("vxlan 4789 inner dst", outer(VXLAN(vni=1) / inner("10.244.1.98", "10.244.2.20"), 4789), True),
        ("vxlan others", outer(VXLAN(vni=1) / inner("10.244.1.98", "10.244.2.99")), False),
        ("udp 8472 too short", outer(b"\x08\x00\x00\x00\x00\x00\x01\x00"), False),
        ("other udp port, our bytes", outer(VXLAN(vni=1) / inner("10.244.1.60", "10.244.2.20"), 9999), False),
        ("geneve inner src", outer(GENEVE(vni=1, proto=0x6558) / inner("10.244.1.60", "10.244.2.99"), 6081), True),
        ("geneve with options inner dst",
         outer(GENEVE(vni=1, proto=0x6558, optionlen=2, options=b"\x01\x02\x03\x04\x05\x06\x07\x08")
               / inner("10.244.1.98", "10.244.2.20"), 6081), True),
        ("geneve others", outer(GENEVE(vni=1, proto=0x6558) / inner("10.244.1.98", "10.244.2.99"), 6081), False),
        # of TCP, the handshake and the resets only
        ("plain syn-ack", Ether() / IP(src="10.96.0.20", dst="10.244.1.60") / TCP(sport=80, dport=40000, flags="SA"),
         True),
        ("plain reset", Ether() / IP(src="10.96.0.20", dst="10.244.1.60") / TCP(sport=80, dport=40000, flags="RA"),
         True),
        ("plain ack", Ether() / IP(src="10.244.1.60", dst="10.96.0.20") / TCP(sport=40000, dport=80, flags="A"), False),
        ("plain fin", Ether() / IP(src="10.96.0.20", dst="10.244.1.60") / TCP(sport=80, dport=40000, flags="FA"), False),
        ("plain udp", Ether() / IP(src="10.244.1.60", dst="10.96.0.10") / UDP(sport=40000, dport=53), True),
        ("vxlan inner ack", outer(VXLAN(vni=1) / inner("10.244.1.60", "10.244.2.99", "A")), False),
        ("vxlan inner reset", outer(VXLAN(vni=1) / inner("10.244.2.99", "10.244.1.60", "R")), True),
        ("vxlan inner syn-ack, ip options",
         outer(VXLAN(vni=1) / inner("10.244.2.99", "10.244.1.60", "SA", [IPOption_RR(routers=["1.2.3.4"])])), True),
        ("vxlan inner fin, ip options",
         outer(VXLAN(vni=1) / inner("10.244.2.99", "10.244.1.60", "FA", [IPOption_RR(routers=["1.2.3.4"])])), False),
        ("vxlan inner icmp", outer(VXLAN(vni=1) / Ether() / IP(src="10.244.1.60", dst="10.244.2.99") / ICMP()), True),
        ("geneve with options inner ack",
         outer(GENEVE(vni=1, proto=0x6558, optionlen=2, options=b"\x01\x02\x03\x04\x05\x06\x07\x08")
               / inner("10.244.1.98", "10.244.2.20", "A"), 6081), False),
        ("geneve with options inner syn-ack",
         outer(GENEVE(vni=1, proto=0x6558, optionlen=2, options=b"\x01\x02\x03\x04\x05\x06\x07\x08")
               / inner("10.244.1.98", "10.244.2.20", "SA"), 6081), True),
        ("the end mark", Ether() / IP(src="127.0.0.1", dst="127.0.0.1") / UDP(sport=50000, dport=capture.MARK_PORT),
         True),
        ("loopback, another port", Ether() / IP(src="127.0.0.1", dst="127.0.0.1") / UDP(sport=50000, dport=10), False),
    ]


@needs_tcpdump
def test_the_filter_keeps_the_probes_traffic_and_tunnelled_packets_carrying_it(tmp_path: Path):
    from scapy.layers.inet import IP
    from scapy.utils import rdpcap, wrpcap

    cases = crafted()
    packets = []
    for n, (_, packet, _) in enumerate(cases):
        packet[IP].id = 1000 + n  # the outer header's id names the case
        packets.append(packet)
    source, kept = tmp_path / "in.pcap", tmp_path / "out.pcap"
    wrpcap(str(source), packets)
    done = subprocess.run([TCPDUMP, "-n", "-r", str(source), "-w", str(kept), capture.capture_filter(PROBES)],
                          capture_output=True, text=True, timeout=10, check=False)
    assert done.returncode == 0, done.stderr
    matched = {p[IP].id - 1000 for p in rdpcap(str(kept))}
    assert {cases[n][0] for n in matched} == {name for name, _, keep in cases if keep}


def test_the_command_passes_the_filter_as_an_argument_not_in_the_script():
    bpf = capture.capture_filter(PROBES)
    command = capture.tcpdump_command(bpf, PROBES, 30, mark="netdoctor-capture-end-1")
    assert command[:2] == ["bash", "-c"] and command[-2:] == [bpf, "netdoctor-capture-end-1"]
    script = command[2]
    assert bpf not in script and "netdoctor-capture-end" not in script
    assert f"-s {capture.SNAPLEN}" in script and f"-c {capture.MAX_PACKETS}" in script and "-w -" in script
    assert "read -r -t 30 _" in script and "@@link" in script and "@@conntrack" in script
    assert script.index("tcpdump") < script.index("ip -j -d link show") < script.index("read -r") \
        < script.index("conntrack -L") < script.index(f"/dev/udp/127.0.0.1/{capture.MARK_PORT}") \
        < script.index("kill -INT") < script.index("ip -j -4 neigh show") \
        < script.index("wait $pid") < script.index("echo @@link")  # listed while tcpdump flushes, printed after
    assert "@@conntrack" not in capture.tcpdump_command(bpf, PROBES, 30, conntrack=False)[2]  # a pod's


# --- running the script ------------------------------------------------------------------------

FAKE_TCPDUMP = f"""#!{sys.executable}
import signal, sys, time
signal.signal(signal.SIGINT, lambda *_: (sys.stdout.buffer.write(b"PCAP-END"), sys.stdout.flush(), sys.exit(0)))
sys.stdout.buffer.write(b"PCAP-START " + " ".join(sys.argv[1:]).encode() + b"\\n"); sys.stdout.flush()
sys.stderr.write("tcpdump: listening on any\\n"); sys.stderr.flush()
time.sleep(60)
sys.exit(3)
"""


class Running:
    """The capture script as a child process, its stderr read as it comes."""

    def __init__(self, command: list[str], env: dict | None = None):
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env)
        self.stderr = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for chunk in iter(lambda: self.proc.stderr.read1(4096), b""):
            self.stderr += chunk

    def wait_listening(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while capture.READY_MARK not in self.stderr:
            assert time.monotonic() < deadline, f"never listened: {self.stderr!r}"
            assert self.proc.poll() is None, f"ended early: {self.stderr!r}"
            time.sleep(0.02)

    def stop(self, line: bool = True, timeout: float = 5.0) -> tuple[float, bytes]:
        start = time.monotonic()
        if line:  # the stop, and (the script sends its mark in between) the end
            self.proc.stdin.write(b"\n\n")
            self.proc.stdin.flush()
        else:
            self.proc.stdin.close()
        try:
            stdout = self.proc.stdout.read()
            self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
        self._reader.join(2)
        return time.monotonic() - start, stdout


@pytest.fixture
def fake_tcpdump(tmp_path: Path) -> dict:
    tool = tmp_path / "bin" / "tcpdump"
    tool.parent.mkdir()
    tool.write_text(FAKE_TCPDUMP)
    tool.chmod(0o755)
    return {**os.environ, "PATH": f"{tool.parent}:{os.environ['PATH']}"}


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("line", [True, False], ids=["a line", "eof"])
def test_the_script_stops_tcpdump_on_stdin_then_lists_the_host(fake_tcpdump, line):
    bpf = capture.capture_filter(PROBES)
    run = Running(capture.tcpdump_command(bpf, PROBES, 60), env=fake_tcpdump)
    run.wait_listening()
    elapsed, stdout = run.stop(line)
    assert run.proc.returncode == 0 and elapsed < 4  # not the 60 s timeout
    assert stdout.startswith(b"PCAP-START -i any") and stdout.endswith(b"PCAP-END")  # SIGINT reached it
    assert stdout.splitlines()[0].endswith(bpf.encode())  # the filter arrived as one argument
    err = run.stderr
    assert err.index(capture.READY_MARK) < err.index(capture.INVENTORY_MARK) < err.index(b"@@end") \
        < err.index(b"@@conntrack") < err.index(b"@@ctend")
    from netdoctor.probe import inventory

    assert inventory.parse_inventory(err[err.index(capture.INVENTORY_MARK):]).by_name("lo") is not None


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_script_stops_by_itself_after_max_seconds(fake_tcpdump):
    run = Running(capture.tcpdump_command(capture.capture_filter(PROBES), PROBES, 1), env=fake_tcpdump)
    run.wait_listening()
    start = time.monotonic()
    run.proc.wait(5)
    assert time.monotonic() - start < 3 and run.proc.returncode == 0
    run.proc.stdin.close()
    assert run.proc.stdout.read().endswith(b"PCAP-END")


@needs_tcpdump
@pytest.mark.skipif(os.geteuid() != 0, reason="tcpdump -i any needs root")
def test_the_script_with_the_real_tcpdump_writes_a_pcap_and_the_inventory():
    quiet = ["192.0.2.77"]  # TEST-NET-1: no traffic; capturing only listens
    run = Running(capture.tcpdump_command(capture.capture_filter(quiet), quiet, 30))
    run.wait_listening()
    elapsed, stdout = run.stop()
    assert elapsed < 4
    assert stdout[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    listing = run.stderr[run.stderr.index(capture.INVENTORY_MARK):]
    from netdoctor.probe import inventory

    found = inventory.parse_inventory(listing)
    assert found.by_name("lo") is not None
    assert b"@@conntrack" in listing and b"@@ctend" in listing
    assert inventory.parse_conntrack(listing.decode()) == ()  # nothing from an address nobody uses


@needs_tcpdump
@pytest.mark.skipif(os.geteuid() != 0, reason="tcpdump -i any needs root")
def test_every_packet_sent_before_the_stop_is_in_the_capture():
    """The stop is a SIGINT, which flushes: nothing tcpdump was handed is cut off with it."""
    quiet = "127.0.0.77"  # loopback: nobody listens, nothing leaves the host
    run = Running(capture.tcpdump_command(capture.capture_filter([quiet]), [quiet], 30))
    run.wait_listening()
    ports = set()
    for _ in range(40):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"netdoctor", (quiet, 9))
            ports.add(sender.getsockname()[1])
    time.sleep(0.2)  # the kernel has handed tcpdump every packet (--immediate-mode)
    elapsed, stdout = run.stop()
    assert elapsed < 4
    captured = {p.sport for p in pcap.decode(stdout, {}) if p.dst == quiet and p.proto == "udp"}
    assert captured == ports


def test_a_node_lists_the_tracked_connections_only_of_the_probes_that_open_flows():
    """Both probes' packets are captured; the node's conntrack is listed for the one whose steps
    open TCP or UDP flows (each listing walks the kernel's whole table)."""
    from types import SimpleNamespace

    from netdoctor.errors import ClusterError

    commands = []

    class Recording:
        def exec_stream(self, namespace, pod, command, container=None, **kwargs):
            commands.append(command)
            raise ClusterError("no cluster here")

    probe = SimpleNamespace(kube=Recording(), namespace="ns", name="capture-node-1")
    with capture.Sniffer(PROBES, PROBES[:1], 30) as sniffer:
        sniffer.start([capture.Point("node-1", "node-1", probe)])
        blind, = sniffer.stop()
    (_, _, script, _, bpf, mark), = commands
    assert f"<src>{PROBES[0]}</src>" in script and f"conntrack -L -s {PROBES[0]} " in script and PROBES[1] not in script
    assert all(f"host {ip}" in bpf for ip in PROBES) and mark.startswith("netdoctor-capture-end-")
    assert blind.blind and "no cluster here" in blind.blind


def test_round_one_captures_on_a_node_as_soon_as_its_probe_runs_before_the_traffic_probes_do():
    """While the probes start (netdoctor.probe.runner): a node's capture probe runs first (it has no
    pod network to wait for); its tcpdump starts once every traffic probe has its IP (the filter
    names them), the source's own when the source runs; round 1 takes those captures over."""
    from types import SimpleNamespace

    from netdoctor.errors import ClusterError
    from netdoctor.model import CaptureMode, Plan, PlannedProbe, ProbePurpose, Step, Layer, TcpConnect
    from netdoctor.probe import runner
    from netdoctor.probe.fleet import Capability, Starting

    started = []

    class Recording:
        def exec_stream(self, namespace, pod, command, container=None, **kwargs):
            started.append(pod)
            raise ClusterError("no cluster here")

    def running(name, caps=frozenset()):
        return SimpleNamespace(kube=Recording(), namespace="ns", name=name, spec=SimpleNamespace(capabilities=caps),
                               pod=SimpleNamespace(node_name="node-1"),
                               connect=lambda: started.append(f"{name} channel"))

    plan = Plan((PlannedProbe("source", "node-1", "ns", capture=True),
                 PlannedProbe("capture-node-1", "node-1", "ns", purpose=ProbePurpose.NODE_CAPTURE)),
                (Step("svc", "ND-SVC-001", Layer.SERVICE, "source", TcpConnect("10.96.0.1", 80)),),
                capture=CaptureMode.AUTO)
    node, source = running("capture-node-1"), running("source", frozenset({Capability.NET_RAW}))
    with runner._EarlyStart(plan, runner.RunOptions(), None) as early:
        early(Starting({"capture-node-1": node}, {"capture-node-1": NODE_1}))
        assert started == []  # the source's IP is not known yet: no filter to capture with
        early(Starting({"capture-node-1": node}, {"capture-node-1": NODE_1, "source": PROBES[0]}))
        time.sleep(0.2)
        assert started == ["capture-node-1"]
        early(Starting({"capture-node-1": node, "source": source}, {"capture-node-1": NODE_1, "source": PROBES[0]}))
        sniffer = early.sniffer_for([PROBES[0]], [PROBES[0]])
    assert sniffer is not None and early.sniffer_for([PROBES[0]], [PROBES[0]]) is None
    with sniffer:
        sniffer.start([capture.Point("probe source", "node-1", source, "source"),
                       capture.Point("node-1", "node-1", node)])
        captures = sniffer.stop()
    assert started.count("capture-node-1") == 1 and "source channel" in started and "source" in started
    assert [c.point for c in captures] == ["probe source", "node-1"] and all(c.blind for c in captures)


# --- a capture that lost packets -------------------------------------------------------------------

LOSSY_TCPDUMP = f"""#!{sys.executable}
import os, signal, struct, sys, time
def stop(*_):
    sys.stderr.write("12 packets captured\\n12 packets received by filter\\n{{dropped}} packets dropped by kernel\\n")
    sys.exit(0)
signal.signal(signal.SIGINT, stop)
sys.stdout.buffer.write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 512, 276))
# the script's mark (its last argument), as a frame tcpdump would have read: not IP, nothing to decode
mark = open(f"/proc/{{os.getppid()}}/cmdline", "rb").read().split(b"\\0")[-2]
frame = struct.pack("!H2xI2xB9x", 0x88b5, 1, 4) + mark
sys.stdout.buffer.write(struct.pack("<IIII", 0, 0, len(frame), len(frame)) + frame if {{reads}} else b"")
sys.stdout.flush()
sys.stderr.write("tcpdump: listening on any\\n"); sys.stderr.flush()
time.sleep(60)
"""


def stand_in_capture(tmp_path: Path, dropped: int, reads_its_mark: bool = True):
    """One point's capture, stopped at once, by the stand-in tcpdump that counts `dropped`."""
    from types import SimpleNamespace

    from localexec import LocalKube

    tool = tmp_path / "bin" / "tcpdump"
    tool.parent.mkdir()
    tool.write_text(LOSSY_TCPDUMP.replace("{dropped}", str(dropped)).replace("{reads}", str(reads_its_mark)))
    tool.chmod(0o755)
    kube = LocalKube(tmp_path)
    kube.env["PATH"] = f"{tool.parent}:{kube.env['PATH']}"
    node = capture.Point("node-1", "node-1", SimpleNamespace(kube=kube, namespace="ns", name="capture-node-1"))
    with capture.Sniffer(PROBES, PROBES, max_seconds=30) as sniffer:
        sniffer.start([node])
        [seen] = sniffer.stop()
    assert seen.inventory is not None and seen.inventory.by_name("lo") is not None
    return seen


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("dropped", [0, 3])
def test_a_capture_whose_kernel_dropped_packets_is_blind_with_the_count(tmp_path: Path, dropped):
    """tcpdump's own count at its end: a point that lost packets cannot show where a packet was not,
    so it is blind (its interfaces are still listed); one that lost none keeps its packets."""
    seen = stand_in_capture(tmp_path, dropped)
    if dropped:
        assert seen.blind == ("tcpdump lost 3 packets (the kernel's capture buffer overflowed): "
                              "a packet it did not see may have passed") and seen.packets == ()
    else:
        assert seen.blind is None


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_a_capture_whose_tcpdump_never_reads_its_mark_is_blind(tmp_path: Path):
    """A tcpdump starved of CPU for longer than the stop waits: the packets it had not read yet
    will be lost with its SIGINT, uncounted; the point is blind, its interfaces still listed."""
    started = time.monotonic()
    seen = stand_in_capture(tmp_path, 0, reads_its_mark=False)
    assert seen.blind == ("tcpdump was stopped before it read its end mark (it lagged over 2 s behind the "
                          "traffic): a packet it did not see may have passed") and seen.packets == ()
    assert capture.MARK_TIMEOUT <= time.monotonic() - started < capture.MARK_TIMEOUT + 2


@needs_tcpdump
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ping") is None, reason="tcpdump -i any and ping -f need root")
def test_the_real_tcpdump_starved_of_cpu_loses_packets_and_the_point_goes_blind(tmp_path: Path):
    """The busy node, on loopback: tcpdump stopped (as a process waiting for a CPU is) while
    packets it must keep arrive; the kernel's buffer overflows and tcpdump says so at its end."""
    from types import SimpleNamespace

    from localexec import LocalKube

    node = capture.Point("node-1", "node-1", SimpleNamespace(kube=LocalKube(tmp_path), namespace="ns", name="capture"))
    with capture.Sniffer(["127.0.0.1"], [], max_seconds=30) as sniffer:
        sniffer.start([node])
        tcpdump = int(subprocess.run(["pgrep", "-n", "-f", "^tcpdump -i any .*host 127.0.0.1"], capture_output=True,
                                     text=True, check=True).stdout)
        os.kill(tcpdump, signal.SIGSTOP)
        try:
            subprocess.run(["ping", "-f", "-q", "-c", "20000", "-s", "1000", "127.0.0.1"], capture_output=True, timeout=60)
        finally:
            os.kill(tcpdump, signal.SIGCONT)
        [seen] = sniffer.stop()
    assert seen.blind and seen.blind.startswith("tcpdump lost ") and seen.packets == ()
    assert seen.inventory is not None and seen.inventory.by_name("lo") is not None


@needs_tcpdump
@pytest.mark.skipif(os.geteuid() != 0, reason="tcpdump -i any needs root")
def test_packets_tcpdump_had_not_read_when_told_to_stop_are_in_the_capture(tmp_path: Path):
    """A tcpdump that waits for a CPU (a busy node, a probe at its CPU limit) when the stop comes:
    its SIGINT would end it with the packets still in the kernel's buffer unread, and drop them
    without counting them as drops. The capture goes on until tcpdump has read its own mark, sent
    after the steps: every packet before it is in."""
    from types import SimpleNamespace

    from localexec import LocalKube

    quiet = "127.0.0.78"
    node = capture.Point("node-1", "node-1", SimpleNamespace(kube=LocalKube(tmp_path), namespace="ns", name="capture"))
    with capture.Sniffer([quiet], [], max_seconds=30) as sniffer:
        sniffer.start([node])
        tcpdump = int(subprocess.run(["pgrep", "-n", "-f", f"^tcpdump -i any .*host {quiet}"], capture_output=True,
                                     text=True, check=True).stdout)
        os.kill(tcpdump, signal.SIGSTOP)
        try:
            ports = set()
            for _ in range(40):
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
                    sender.sendto(b"netdoctor", (quiet, 9))
                    ports.add(sender.getsockname()[1])
            stopped: list = []
            stopping = threading.Thread(target=lambda: stopped.extend(sniffer.stop()))
            stopping.start()
            time.sleep(0.5)  # the stop has begun while tcpdump still waits
        finally:
            os.kill(tcpdump, signal.SIGCONT)
        stopping.join(10)
    [seen] = stopped
    assert seen.blind is None, seen.blind
    assert {p.sport for p in seen.packets if p.dst == quiet and p.proto == "udp"} == ports
