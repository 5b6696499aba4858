"""What a probe saw: frozen, typed results of exec, TCP, DNS, ping and listener checks.

Produced by `netdoctor.probe.commands` parsers (via `netdoctor.probe.fleet.Probe`) and by `netdoctor.cluster.kube`
(ExecResult); consumed by the judge and report stages. No I/O here.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import Enum
from functools import cached_property


class ExecErrorKind(Enum):
    MISSING_BINARY = "missing-binary"  # the runtime could not find the executable
    TIMEOUT = "timeout"  # our deadline passed before the command ended
    FAILURE = "failure"  # the API server reported another failure (container gone, ...)
    CONNECTION_LOST = "connection-lost"  # the stream closed without an exit status


@dataclass(frozen=True)
class ExecError:
    kind: ExecErrorKind
    message: str
    binary: str | None = None  # for MISSING_BINARY: the executable that was not found


@dataclass(frozen=True)
class ExecResult:
    exit_code: int | None  # None when the command did not end normally (see error)
    stdout: bytes
    stderr: bytes
    error: ExecError | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


class TcpOutcome(Enum):
    """How a connection attempt ended: a TCP connect, or a UDP exchange (an answer connects)."""

    CONNECTED = "connected"
    REFUSED = "refused"  # RST (UDP: ICMP port unreachable): nothing listening, or a REJECT rule
    TIMEOUT = "timeout"  # no answer: dropped somewhere
    UNREACHABLE = "unreachable"  # no route / ICMP host or network unreachable
    ERROR = "error"  # the probe itself failed (missing tool, exec failure, garbage)
    NO_REPLY = "no-reply"  # UDP: neither an answer nor an ICMP error came back: open|filtered


@dataclass(frozen=True)
class TcpResult:
    ip: str
    port: int
    outcome: TcpOutcome
    elapsed: float | None  # seconds, measured inside the probe
    detail: str = ""  # the tool's error text, verbatim
    query_id: int | None = None  # a UDP exchange that sent a DNS query: its id, to find it in captures


class DnsOutcome(Enum):
    ANSWER = "answer"
    NXDOMAIN = "nxdomain"
    SERVFAIL = "servfail"
    REFUSED = "refused"
    NOANSWER = "noanswer"  # NOERROR without records of the asked type (NODATA)
    TIMEOUT = "timeout"
    ERROR = "error"  # the probe could not send or read (ICMP unreachable, tool error, garbage)


@dataclass(frozen=True)
class DnsResult:
    name: str
    rdtype: str
    server: str
    outcome: DnsOutcome
    attempt: int  # 1-based
    addresses: tuple[str, ...] = ()  # A/AAAA addresses, or the text of other records
    rcode: str | None = None  # e.g. "NOERROR", None when no response was decoded
    elapsed: float | None = None  # seconds, measured inside the probe
    detail: str = ""
    query_id: int | None = None  # the DNS message id, to find the query in packet captures


@dataclass(frozen=True)
class ResolvConf:
    nameservers: tuple[str, ...]
    search: tuple[str, ...]
    ndots: int
    derived: str = ""  # "": read from the file; else why it could not be, and what it was derived from


class PingOutcome(Enum):
    REPLY = "reply"
    TIMEOUT = "timeout"
    FRAG_NEEDED = "frag-needed"  # the packet is larger than the path MTU and DF is set
    UNREACHABLE = "unreachable"
    ERROR = "error"


@dataclass(frozen=True)
class PingResult:
    ip: str
    size: int
    outcome: PingOutcome
    rtt_ms: float | None = None
    mtu: int | None = None  # for FRAG_NEEDED, when the tool reported it
    detail: str = ""


class BindScope(Enum):
    ANY = "any"  # 0.0.0.0 or ::  -- reachable on every address of the pod
    LOOPBACK = "loopback"  # 127.0.0.0/8 or ::1 -- unreachable from outside the pod
    POD_IP = "pod-ip"
    OTHER = "other"  # another specific address


@dataclass(frozen=True)
class Listener:
    address: str
    port: int
    scope: BindScope

    def accepts_from_network(self) -> bool:
        return self.scope in (BindScope.ANY, BindScope.POD_IP)


class ListenerStatus(Enum):
    OK = "ok"
    UNAVAILABLE = "unavailable"  # the pod could not be asked (exec refused, container not running, ...)
    NO_TOOL = "no-tool"  # the container has no `cat` (a distroless image): another of the pod's may have


@dataclass(frozen=True)
class ListenerTable:
    status: ListenerStatus
    listeners: tuple[Listener, ...] = ()
    detail: str = ""
    container: str | None = None  # the container whose exec read it (the pod's sockets are all containers')

    def on_port(self, port: int) -> tuple[Listener, ...]:
        return tuple(listener for listener in self.listeners if listener.port == port)


def bind_scope(address: str, pod_ip: str | None) -> BindScope:
    """How widely a socket bound to `address` accepts connections, seen from the pod's IP."""
    ip = ipaddress.ip_address(address)
    mapped = getattr(ip, "ipv4_mapped", None)
    ip = mapped or ip
    if ip.is_unspecified:
        return BindScope.ANY
    if ip.is_loopback:
        return BindScope.LOOPBACK
    if pod_ip and ip == ipaddress.ip_address(pod_ip):
        return BindScope.POD_IP
    return BindScope.OTHER


# --- packet captures: decoded by netdoctor.probe.pcap, interfaces listed by netdoctor.probe.inventory ----------


class Direction(Enum):
    """Seen from the capturing interface (Linux cooked v2 packet type)."""

    IN = "in"  # received on the interface (host, broadcast, multicast, otherhost)
    OUT = "out"  # sent by this host on the interface


@dataclass(frozen=True)
class Encap:
    """The outer headers of a tunnelled packet: which nodes, which UDP port, which network."""

    kind: str  # "vxlan" or "geneve"
    outer_src: str
    outer_dst: str
    port: int
    vni: int


@dataclass(frozen=True)
class Quoted:
    """The packet an ICMP error quotes (its first bytes): what the error is about."""

    proto: str  # "tcp", "udp", "icmp"
    src: str
    dst: str
    sport: int | None = None
    dport: int | None = None
    icmp_id: int | None = None


@dataclass(frozen=True)
class DnsInfo:
    """A DNS message in a captured UDP packet, decoded with dnspython."""

    id: int
    response: bool
    rcode: str  # "NOERROR", "NXDOMAIN", ...
    qname: str  # "api.shop.svc.cluster.local." ("" when it has no question)
    answers: tuple[str, ...] = ()  # A/AAAA addresses


@dataclass(frozen=True)
class Packet:
    """One captured IPv4 packet, the inner one when tunnelled. `index` is its position in the
    capture, so per-interface pcaps can be written from the raw bytes."""

    index: int
    time: float  # seconds since the epoch, from the pcap record
    ifindex: int
    interface: str  # name from the capturing host's interface list; "if<N>" when unknown
    direction: Direction
    proto: str  # "tcp", "udp", "icmp" or "ip"
    src: str
    dst: str
    length: int  # IP total length of the (inner) packet
    dont_fragment: bool = False
    sport: int | None = None
    dport: int | None = None
    tcp_flags: str = ""  # scapy-style letters: "S", "SA", "R", "RA", "A", "PA", "FA" ...
    icmp_type: int | None = None
    icmp_code: int | None = None
    icmp_id: int | None = None  # echo request/reply identifier
    quoted: Quoted | None = None  # for ICMP errors
    encap: Encap | None = None
    dns: DnsInfo | None = None


class InterfaceKind(Enum):
    LOOPBACK = "loopback"
    VETH = "veth"
    BRIDGE = "bridge"
    OVERLAY = "overlay"  # vxlan, geneve, ipip, wireguard: carries pod traffic between nodes
    DEVICE = "device"  # a physical or other interface (the underlay when it holds the node IP)


@dataclass(frozen=True)
class Interface:
    index: int
    name: str
    kind: InterfaceKind
    mtu: int | None = None
    master: str | None = None  # the bridge a port belongs to
    addresses: tuple[str, ...] = ()  # IPv4 addresses with prefix, "10.244.1.1/24"
    link: str | None = None  # an overlay's underlay device (`dev eth0` of a vxlan)
    overlay_port: int | None = None  # a vxlan's/geneve's UDP port
    up: bool = True
    tunnel: str | None = None  # an overlay's link kind: "vxlan", "geneve", "ipip", "wireguard", …

    def ips(self) -> set[str]:
        """The interface's IPv4 addresses without prefix."""
        return {address.split("/")[0] for address in self.addresses}


@dataclass(frozen=True)
class Route:
    destination: str  # "10.244.2.0/24" or "default"
    device: str | None
    via: str | None = None


@dataclass(frozen=True)
class NatEntry:
    """A connection-tracking entry: the connection as sent, and who the host expects to answer
    (for a Service IP after DNAT: the chosen pod). Read on the node, so it holds even when the
    translated packet was dropped before any interface saw it."""

    proto: str
    src: str
    sport: int | None  # the source port, or the ICMP echo id
    dst: str
    dport: int | None
    reply_src: str
    reply_sport: int | None

    @property
    def translated(self) -> bool:
        return self.reply_src != self.dst or (self.dport is not None and self.reply_sport != self.dport)


@dataclass(frozen=True)
class Inventory:
    """A host's (node or pod) interfaces, IPv4 routes, neighbours and bridge forwarding table."""

    interfaces: tuple[Interface, ...]
    routes: tuple[Route, ...] = ()
    neighbours: tuple[tuple[str, str, str], ...] = ()  # (ip, mac, device)
    fdb: tuple[tuple[str, str], ...] = ()  # (mac, port device) learned or static on a bridge
    unread: tuple[str, ...] = ()  # tables the host's listing did not show ("route", "neigh", "fdb"): unknown, not empty

    def by_index(self, index: int) -> Interface | None:
        return next((i for i in self.interfaces if i.index == index), None)

    def by_name(self, name: str | None) -> Interface | None:
        return self._named.get(name)

    def names(self) -> dict[int, str]:
        return {i.index: i.name for i in self.interfaces}

    # Lookups the hop judge asks: which hop a packet takes on this host.

    def route_to(self, ip: str) -> Route | None:
        """The main-table route the kernel picks for `ip` (longest prefix; first listed on a tie).
        A route without a device (blackhole, unreachable, prohibit, throw) forwards nothing."""
        address = ipaddress.ip_address(ip)
        best: Route | None = None
        best_prefix = -1
        for network, route in self._route_networks:
            if address in network and network.prefixlen > best_prefix:
                best, best_prefix = route, network.prefixlen
        return best

    def host_port_of(self, pod_ip: str) -> Interface | None:
        """The host-side interface a local pod IP hangs off: the veth of its /32 route (Calico), else
        its neighbour entry's veth, or the bridge port the FDB maps its MAC to (flannel, bridge CNI)."""
        ip = str(ipaddress.ip_address(pod_ip))
        return self._host_route_veth(ip) or self._neighbour_port(ip)

    def underlay(self, node_ip: str) -> Interface | None:
        """The interface holding `node_ip`, else the default route's device."""
        ip = str(ipaddress.ip_address(node_ip))
        holder = next((i for i in self.interfaces if ip in i.ips()), None)
        if holder is not None:
            return holder
        default = next((r for r in self.routes if r.destination == "default"), None)
        return self.by_name(default.device) if default else None

    def local_ips(self) -> set[str]:
        """Every IPv4 address of the host, without prefix."""
        return {ip for interface in self.interfaces for ip in interface.ips()}

    def _host_route_veth(self, ip: str) -> Interface | None:
        route = self._first_route.get(f"{ip}/32")
        interface = self.by_name(route.device) if route else None
        return interface if interface and interface.kind is InterfaceKind.VETH else None

    def _neighbour_port(self, ip: str) -> Interface | None:
        entry = self._first_neighbour.get(ip)
        if entry is None:
            return None
        _, mac, device = entry
        interface = self.by_name(device)
        if interface is None or interface.kind is InterfaceKind.VETH:
            return interface
        if interface.kind is InterfaceKind.BRIDGE:
            ports = (self.by_name(port) for entry_mac, port in self.fdb if entry_mac == mac)
            return next((p for p in ports if p and p.master == device), None)
        return None

    # The tables as the lookups above read them, built once: the hop judge asks for every packet.

    @cached_property
    def _named(self) -> dict[str | None, Interface]:
        return {i.name: i for i in reversed(self.interfaces)}  # the first listed wins, as a scan's

    @cached_property
    def _route_networks(self) -> tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, Route], ...]:
        return tuple((ipaddress.ip_network("0.0.0.0/0" if r.destination == "default" else r.destination), r)
                     for r in self.routes)

    @cached_property
    def _first_route(self) -> dict[str, Route]:
        return {r.destination: r for r in reversed(self.routes)}

    @cached_property
    def _first_neighbour(self) -> dict[str, tuple[str, str, str]]:
        return {n[0]: n for n in reversed(self.neighbours)}


# --- who turned a connection away: told apart from the captures by netdoctor.judge.hops ------


class RefusalKind(Enum):
    """Who answered a connection with a refusal, or with silence. A probe's connect() cannot tell
    a reset from an ICMP port unreachable (both are "connection refused"): the packets can."""

    POD = "pod"  # the destination itself: a reset (for UDP a port unreachable) from its own address
    REJECT = "reject"  # a node's reject rule (NetworkPolicy, firewall): an ICMP error or a reset before the pod
    NO_ENDPOINTS = "no-endpoints"  # a node's Service rules rejected it: no endpoint for the Service IP there
    UNREACHABLE = "unreachable"  # a node or router could not deliver it (no route or neighbour, MTU)
    SILENT = "silent"  # nothing came back: dropped
    UNKNOWN = "unknown"  # no capture shows who answered (capture off, or blind where it mattered)


@dataclass(frozen=True)
class Refusal:
    """How a connection was turned away: the kind, who sent the reset or ICMP error (its real
    sender when a capture saw it before conntrack rewrote it), and the node it belongs to."""

    kind: RefusalKind
    sender: str | None = None
    node: str | None = None
    how: str = ""  # "TCP reset", "ICMP port unreachable"
    seen_as: str | None = None  # the sender as the client saw it, when conntrack rewrote it (a Service IP)

    @property
    def reached(self) -> bool:
        """The destination itself answered: only its own reset proves the path to it works."""
        return self.kind is RefusalKind.POD
