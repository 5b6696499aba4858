"""Packet capture while a check's steps run, for the hop-by-hop verdict.

Called by the runner around the steps: `Sniffer.start()` runs tcpdump in the traffic probes (their
own eth0) and in hostNetwork probes on the nodes (every interface, `-i any`), streamed back over
exec, and returns once every tcpdump has said it listens (the hosts' links, addresses and
routes are listed meanwhile); `Sniffer.begin()` starts a point before the others, as soon as its
probe runs while the rest still start. Each point's pcap is decoded as it streams in, while the
steps run: by the run's decoder process (netdoctor.probe.decoding), else (netdoctor.probe.pcap) in
the point's own thread. `Sniffer.stop()` tells every tcpdump at once to stop through its stdin;
each sends itself a mark and ends once the mark is in its pcap (so every packet before it is); each
point reads the rest, the host's interfaces (netdoctor.probe.inventory) that name the packets'
interfaces, and its tracked connections. A capture point that could not capture comes back blind,
with the reason, and so does one that lost packets (tcpdump's own count of the kernel's drops, the
packet limit, or a mark it had not read in time): the packets it did see are no proof that others
did not pass.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Iterable

from netdoctor.probe import inventory
from netdoctor.probe import pcap
from netdoctor.probe.decoding import DecoderProcess, RemoteDecoder
from netdoctor.errors import NetdoctorError
from netdoctor.model import Capture
from netdoctor.probe.fleet import Probe

SNAPLEN = 512  # outer + inner headers of a tunnelled packet, and the DNS messages we send
MAX_PACKETS = 20000  # a busy node must not flood the capture
READY_TIMEOUT = 5.0  # seconds for tcpdump to start listening
STOP_TIMEOUT = 3.0  # seconds for tcpdump to flush and end once told to stop
MARK_TIMEOUT = 2.0  # seconds for tcpdump to read its own mark once told to stop
MARK_PORT = 9  # UDP discard, on loopback: where the mark is sent
POLL = 0.02  # seconds between looks at the stop flag while packets stream in
OVERLAY_PORTS = (8472, 4789)  # VXLAN: Linux/flannel and IANA
GENEVE_PORT = 6081
READY_MARK = b"listening on"
INVENTORY_MARK = b"@@link"
_DROPPED = re.compile(rb"(\d+) packets? dropped by kernel")  # tcpdump's count once it ends
Decoder = pcap.Decoder | RemoteDecoder  # in this process, or in the run's decoder process


@dataclass(frozen=True)
class Point:
    """Where to capture: a node (through its hostNetwork capture probe) or a traffic probe's eth0."""

    name: str  # "node-1", or "probe source"
    node: str | None
    probe: Probe
    traffic_role: str | None = None  # the traffic probe's role, for a pod capture


def capture_filter(ips: Iterable[str]) -> str:
    """BPF: the packets the judge reads, to or from the probes, plain or tunnelled (the inner IPs
    theirs): UDP and ICMP, and of TCP the handshake and the resets (SYN, SYN-ACK, RST: a probe's
    connection carries no data, and its ACKs and FINs tell nothing its handshake does not; half
    the packets fewer to stream and decode); and the capture's own end mark."""
    ips = sorted(set(ips))
    hosts = " or ".join(f"host {ip}" for ip in ips)
    words = [f"0x{int(ipaddress.IPv4Address(ip)):08x}" for ip in ips]
    # The inner IPv4 header starts 30 bytes into the UDP header of a VXLAN packet (UDP 8 + VXLAN 8
    # + Ethernet 14), its source and destination 12 and 16 bytes further; Geneve adds its options
    # (4 × opt_len).
    vxlan_ports = " or ".join(f"udp port {p}" for p in OVERLAY_PORTS)
    vxlan = " or ".join(f"udp[{30 + o}:4] = {w}" for o in (12, 16) for w in words)
    geneve_inner = "((udp[8] & 0x3f) * 4) + 30"
    geneve = " or ".join(f"udp[{geneve_inner} + {o} : 4] = {w}" for o in (12, 16) for w in words)
    mark = f"dst host 127.0.0.1 and udp dst port {MARK_PORT}"
    return (f"(({hosts}) and (not tcp or tcp[tcpflags] & (tcp-syn|tcp-rst) != 0)) or ({mark}) "
            f"or (({vxlan_ports}) and ({vxlan}) and {_inner_handshake('30')}) "
            f"or (udp port {GENEVE_PORT} and ({geneve}) and {_inner_handshake(geneve_inner)})")


def _inner_handshake(start: str) -> str:
    """BPF: the IPv4 packet at udp[start] (a tunnel's inner one) is no TCP, or a SYN, SYN-ACK or RST."""
    return f"(udp[{start} + 9] != 6 or udp[{start} + ((udp[{start}] & 0x0f) * 4) + 13] & 0x06 != 0)"


def tcpdump_command(bpf: str, sources: list[str], max_seconds: float, conntrack: bool = True,
                    mark: str = "") -> list[str]:
    """tcpdump writing pcap to stdout, packet by packet, until a line (or EOF) arrives on stdin
    or `max_seconds` pass; after a line, `mark` goes to loopback as a datagram tcpdump keeps, and
    once a second line comes (the reader has seen the mark in the pcap: tcpdump read every packet
    before it), SIGINT, so it flushes and exits (a SIGINT ends it at once: packets still in the
    kernel's buffer, unread, would be lost uncounted); then, on stderr, the host's interface
    inventory and, with `conntrack` (a node's; a pod's own table tells nothing the packets do not),
    its tracked connections from `sources`. What the traffic does not change is listed while the
    capture runs; the neighbours and conntrack after the traffic (so the neighbour tables know the
    probes and conntrack shows where each Service connection went), while tcpdump flushes."""
    during, after, printed = inventory.inventory_script()
    tracking, tracked = inventory.conntrack_script(sources) if conntrack else (":", ":")
    script = (f"tcpdump -i any -p -n -U --immediate-mode -s {SNAPLEN} -c {MAX_PACKETS} -w - \"$1\" & pid=$!; "
              f"{during}; read -r -t {int(max_seconds)} _ && told=1; {tracking}; "
              f"if [ \"$told\" ]; then printf %s \"$2\" 2>/dev/null >/dev/udp/127.0.0.1/{MARK_PORT}; "
              f"read -r -t {int(MARK_TIMEOUT) + 1} _; fi; "
              f"kill -INT $pid 2>/dev/null; {after}; wait $pid; ( {printed}; {tracked} ) >&2")
    return ["bash", "-c", script, "netdoctor-capture", bpf, mark]


class _Session(threading.Thread):
    """One tcpdump at one point: start, drain stdout while the steps run, stop, read the rest
    (the pcap on stdout; the host's inventory and conntrack entries on stderr)."""

    def __init__(self, point: Point, command: list[str], decoder: Decoder, tracked: frozenset[str], mark: bytes):
        super().__init__(name=f"capture {point.name}", daemon=True)
        self.point, self.command, self.tracked, self.mark = point, command, tracked, mark
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.decoder = decoder
        self.failure: str | None = None
        self.stderr = b""
        self.result: Capture | None = None
        self._marked = False  # the mark is in the pcap read so far
        self._tail = b""  # the pcap's last bytes, where a mark cut between two reads begins
        self._listening = None  # the stream, once tcpdump listens: `stop` tells it to end
        self._told = threading.Lock()  # held once the stop line is sent

    def run(self) -> None:
        probe = self.point.probe
        try:
            with probe.kube.exec_stream(probe.namespace, probe.name, self.command, "probe", stdin=True) as stream:
                if self._wait_listening(stream):
                    self._listening = stream
                    self._drain_until_stopped(stream)
                self.stderr = stream.stderr
        except NetdoctorError as exc:
            self.failure = self.failure or f"capture failed: {exc.message}"
        except OSError as exc:  # the stream's socket broke outside a read
            self.failure = self.failure or f"capture failed: {exc}"
        finally:
            self.ready.set()
        self.result = self.capture()

    def _wait_listening(self, stream) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT
        while READY_MARK not in stream.stderr:
            if stream.closed or time.monotonic() > deadline or self.stopping.is_set():
                self.failure = f"tcpdump did not start: {_last_line(stream.stderr) or 'no output'}"
                return False
            self._feed(stream.read(POLL))
        self.ready.set()
        return True

    def stop(self) -> None:
        """From the caller's thread: the stop line goes at once (this thread would notice only
        within POLL), then this thread reads the rest."""
        self.stopping.set()
        if self._listening is not None:
            self._tell(self._listening)

    def _tell(self, stream) -> None:
        if self._told.acquire(blocking=False):
            stream.write(b"\n")

    def _drain_until_stopped(self, stream) -> None:
        while not self.stopping.is_set() and not stream.closed:
            self._feed(stream.read(POLL))
        self._tell(stream)
        deadline = time.monotonic() + MARK_TIMEOUT
        while not self._marked and not stream.closed and time.monotonic() < deadline:
            self._feed(stream.read(POLL))
        if not stream.closed:
            stream.write(b"\n")  # every packet before the mark is in (or tcpdump is too far behind): stop
        deadline = time.monotonic() + STOP_TIMEOUT
        while not stream.closed and time.monotonic() < deadline:
            self._feed(stream.read(0.1))
        self._feed(stream.read(0))

    def _feed(self, data: bytes) -> None:
        self.decoder.feed(data)
        if data and not self._marked:
            seen = self._tail + data
            self._marked = self.mark in seen
            self._tail = seen[-len(self.mark):]

    def capture(self) -> Capture:
        point = self.point
        base = dict(point=point.name, node=point.node, probe=point.traffic_role)
        if self.failure:
            return Capture(**base, blind=self.failure)
        listing = self.stderr[self.stderr.find(INVENTORY_MARK):] if INVENTORY_MARK in self.stderr else b""
        try:
            found = inventory.parse_inventory(listing)
            packets = self.decoder.packets(found.names())
        except ValueError as exc:
            return Capture(**base, blind=f"capture unreadable: {exc}")
        nat = inventory.parse_conntrack(listing.decode(errors="replace"), self.tracked) \
            if point.traffic_role is None else ()
        lost = _lost(self.stderr.split(INVENTORY_MARK, 1)[0], len(packets), self._marked)
        if lost:  # what it saw is true, what it did not see proves nothing: no hop may be judged on it
            return Capture(**base, inventory=found, nat=nat, blind=lost, pcap=self.decoder.data)
        return Capture(**base, packets=packets, inventory=found, nat=nat, pcap=self.decoder.data)


class Sniffer:
    """The captures of one round of steps. Use as a context manager around `start()` … `stop()`:
    leaving it early (an error, Ctrl-C) stops every tcpdump."""

    def __init__(self, ips: Iterable[str], tracked: Iterable[str], max_seconds: float,
                 decoding: DecoderProcess | None = None):
        """`ips`: the probes' addresses, whose packets are captured. `tracked`: those whose tracked
        connections each node lists; a probe that opens no TCP or UDP flow has none worth a listing
        (each walks the kernel's whole conntrack table: ~15 ms of CPU on the node, however few
        entries match). `decoding`: the run's decoder process; without one, packets are decoded in
        this one."""
        self.ips, self.tracked = frozenset(ips), frozenset(tracked)
        self._bpf, self._sources = capture_filter(self.ips), sorted(self.tracked)
        self._max_seconds, self._decoding = max_seconds, decoding
        self._sessions: dict[str, _Session] = {}  # by point name, in the order they started
        self._points: list[Point] = []  # the round's points, as `start` got them
        self._preload = None if decoding else threading.Thread(target=pcap.preload, name="scapy import", daemon=True)

    def __enter__(self) -> Sniffer:
        return self

    def __exit__(self, *exc_info) -> None:
        for session in self._sessions.values():
            session.stopping.set()

    def begin(self, points: Iterable[Point]) -> None:
        """Start capturing at `points` now, without waiting: a probe that runs before the others
        is listening by the time they do."""
        if self._preload is not None and self._preload.ident is None:  # not started yet
            self._preload.start()
        for point in points:
            if point.name not in self._sessions:
                mark = f"netdoctor-capture-end-{secrets.token_hex(8)}"
                session = _Session(point, tcpdump_command(self._bpf, self._sources, self._max_seconds,
                                                          conntrack=point.traffic_role is None, mark=mark),
                                   self._decoding.decoder() if self._decoding else pcap.Decoder(), self.tracked,
                                   mark.encode())
                self._sessions[point.name] = session
                session.start()

    def start(self, points: Iterable[Point]) -> None:
        """Capture at every one of the round's `points` (those `begin` started go on) and wait
        (bounded) until each listens or has failed."""
        self._points = list(points)
        self.begin(self._points)
        deadline = time.monotonic() + READY_TIMEOUT + 1
        for point in self._points:
            self._sessions[point.name].ready.wait(max(deadline - time.monotonic(), 0))

    def stop(self) -> tuple[Capture, ...]:
        """Each point's capture, in the order `start` got them."""
        for session in self._sessions.values():
            session.stop()
        for session in self._sessions.values():
            session.join(MARK_TIMEOUT + STOP_TIMEOUT + 1)
        if self._preload is not None and self._preload.ident is not None:
            self._preload.join()
        sessions = [self._sessions[point.name] for point in self._points]
        return tuple(s.result or s.capture() if not s.is_alive() else _late(s) for s in sessions)


def _lost(tcpdump_stderr: bytes, packets: int, marked: bool) -> str | None:
    """Why the capture may lack packets that crossed its interfaces: tcpdump's own count of those
    the kernel dropped (its buffer overflowed while tcpdump waited for a CPU, as on a busy node),
    the packet limit reached, or its end mark missing (stopped with packets it had not read yet,
    which its SIGINT drops uncounted); None when it saw everything."""
    dropped = _DROPPED.search(tcpdump_stderr)
    count = int(dropped[1]) if dropped else 0
    if count:
        return (f"tcpdump lost {count} packet{'s' if count > 1 else ''} (the kernel's capture buffer overflowed): "
                f"a packet it did not see may have passed")
    if packets >= MAX_PACKETS:
        return f"the packet limit ({MAX_PACKETS}) was reached: later packets are missing"
    if not marked:
        return (f"tcpdump was stopped before it read its end mark (it lagged over {MARK_TIMEOUT:g} s behind the "
                f"traffic): a packet it did not see may have passed")
    return None


def _late(session: _Session) -> Capture:
    point = session.point
    return Capture(point.name, point.node, point.traffic_role, blind="the capture did not stop in time")


def _last_line(raw: bytes) -> str:
    lines = [line for line in raw.decode(errors="replace").splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""
