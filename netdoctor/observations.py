"""What a probe saw: frozen, typed results of exec, TCP, DNS, ping and listener checks.

Produced by `netdoctor.probecmds` parsers (via `netdoctor.probes.Probe`) and by `netdoctor.kube`
(ExecResult); consumed by the judge and report stages. No I/O here.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import Enum


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
    CONNECTED = "connected"
    REFUSED = "refused"  # RST: reachable host, nothing listening (or a REJECT rule)
    TIMEOUT = "timeout"  # no answer: dropped somewhere
    UNREACHABLE = "unreachable"  # no route / ICMP host or network unreachable
    ERROR = "error"  # the probe itself failed (missing tool, exec failure, garbage)


@dataclass(frozen=True)
class TcpResult:
    ip: str
    port: int
    outcome: TcpOutcome
    elapsed: float | None  # seconds, measured inside the probe
    detail: str = ""  # the tool's error text, verbatim


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


@dataclass(frozen=True)
class ResolvConf:
    nameservers: tuple[str, ...]
    search: tuple[str, ...]
    ndots: int


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
    UNAVAILABLE = "unavailable"  # the pod could not be asked (no `cat`, exec refused, ...)


@dataclass(frozen=True)
class ListenerTable:
    status: ListenerStatus
    listeners: tuple[Listener, ...] = ()
    detail: str = ""

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
