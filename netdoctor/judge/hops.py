"""Hop by hop: each network step's connections followed through the packet captures, from the
source pod to the destination pod and back, to say where a packet was last seen and why it went
no further.

Called by the judge (the report's paths, the diagnosis's path), by the Service-IP judge (which
backends the ClusterIP's connections were translated to) and by the path judges (`refusal`: who
refused a connection). Pure: reads the Evidence's captures, steps and facts. A connection is
recognised at the source by what the step sent (the TCP SYN to its address, the ICMP echo of its
size, the DNS query with its message id), then followed by its source port (or echo id) across
every hop, DNAT and tunnels included; a Service connection translated at the socket (Cilium's
kube-proxy replacement) by the backend address it already carries from the pod on, a normal path
that says so. The hops are those the inventories predict (a CNI's host device such as
`cilium_host`, which its BPF programs bypass, is none) plus every
interface where a capture saw the connection. A refusal is told apart by where it came from and
who sent it: the pod's own reset, a node's reject (ICMP matched by its quoted header, its real
sender read before conntrack rewrote it into the Service IP), no endpoints, or silence.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Iterable

from netdoctor.check.plan import port_of
from netdoctor.judge import cluster_kind
from netdoctor.model import (
    Capture, Cni, DnsQuery, Evidence, Expect, Hop, HopKind, HopPath, PathOutcome, Ping, Reply, ServiceProxy, Step,
    TcpConnect, UdpExchange,
)
from netdoctor.observations import (
    Interface, InterfaceKind, Inventory, NatEntry, Packet, PingOutcome, PingResult, Refusal, RefusalKind, TcpOutcome,
    TcpResult,
)

WINDOW = 15.0  # seconds after a connection's first packet during which its packets count
BIG = 1000  # bytes: a request this large lost while small ones pass is an MTU problem
ICMP_ERRORS = (3, 11, 12)


@dataclass(frozen=True)
class Conn:
    """One connection a step made, as first seen at the source."""

    proto: str
    src: str
    key: int  # the source port, or the ICMP echo id
    dst: str
    dport: int | None
    start: float
    size: int
    what: str  # "SYN to 10.96.0.20:80", for humans
    via: str | None = None  # the Service address it stood for, when translated at the socket (dst is the backend)


@dataclass(frozen=True)
class _Place:
    """A hop to look at: which capture, which interface."""

    hop: Hop
    capture: Capture | None


# --- the entry points ----------------------------------------------------------------------


def paths(ev: Evidence) -> tuple[HopPath, ...]:
    """A HopPath per network step that made connections (the most telling one of the step)."""
    if not ev.captures:
        return ()
    found = [path for step in ev.plan.steps if (path := _step_path(ev, step)) is not None]
    return tuple(_with_mtu(found, ev))


def refusal(ev: Evidence, step: Step) -> Refusal:
    """Who refused the step's connections, for the path judges (a probe's "connection refused" is
    a reset or an ICMP reject alike): a node's reject first, then other errors, then the pod's own
    reset; UNKNOWN when no capture shows any of them."""
    if not ev.captures or step.probe not in ev.probes or _request_matcher(ev, step) is None:
        return Refusal(RefusalKind.UNKNOWN)
    found = [path.refusal for conn in _conns(ev, step) if (path := _follow(ev, step, conn)).refusal]
    telling = (RefusalKind.REJECT, RefusalKind.NO_ENDPOINTS, RefusalKind.UNREACHABLE, RefusalKind.POD)
    return next((r for kind in telling for r in found if r.kind is kind), Refusal(RefusalKind.UNKNOWN))


def spread(ev: Evidence, step: Step) -> tuple[tuple[str, int], ...]:
    """Where the step's connections were translated to (ip:port -> count), seen in the captures."""
    return _spread(ev, _conns(ev, step))


def connections(ev: Evidence, step: Step) -> tuple[tuple[str | None, HopPath], ...]:
    """Each of the step's connections: where it was translated to (ip:port, None when the captures
    don't show it) and its path; judge.coverage reads the Service IP's coverage from them."""
    return tuple((_translated(ev, conn), _follow(ev, step, conn)) for conn in _conns(ev, step))


def _spread(ev: Evidence, conns: list[Conn]) -> tuple[tuple[str, int], ...]:
    counts: dict[str, int] = {}
    for conn in conns:
        target = _translated(ev, conn)
        if target:
            counts[target] = counts.get(target, 0) + 1
    return tuple(sorted(counts.items()))


# --- connections --------------------------------------------------------------------------


def _source_ip(ev: Evidence, step: Step) -> str | None:
    probe = ev.probes.get(step.probe or "")
    return probe.ip if probe else None


def _conns(ev: Evidence, step: Step) -> list[Conn]:
    """The step's connections, from what the source sent before any translation: at its own
    eth0, else at its host-side interface."""
    src = _source_ip(ev, step)
    match = _request_matcher(ev, step)
    if src is None or match is None:
        return []
    conns: dict[tuple[str, int], Conn] = {}
    for p in _first_sightings(ev, step.probe, src, _from_round(ev, step)):
        if p.src == src and match(p):
            key = p.icmp_id if p.proto == "icmp" else p.sport
            if key is not None and ((p.proto, key) not in conns or p.time < conns[(p.proto, key)].start):
                conns[(p.proto, key)] = Conn(p.proto, src, key, p.dst, p.dport, p.time, p.length, _what(step, p))
    found = sorted(conns.values(), key=lambda c: c.start)
    if not found:
        return _socket_conns(ev, step, src)
    if isinstance(step.action, TcpConnect) and not _is_service_ip(ev, step.action.ip):
        # Its own tries, the earliest: a Service translated at the socket sends to the same address.
        return found[:_tries(ev, step)] if _tries(ev, step) else found
    return found


def _socket_conns(ev: Evidence, step: Step, src: str) -> list[Conn]:
    """A Service step's connections translated at the socket (Cilium's kube-proxy replacement,
    Calico's eBPF connect-time balancing): the source sent nothing to the Service IP, its own
    packets already carry a backend's address. They are the connections to the Service's backends
    beyond those the source's other steps made to the same addresses (its pod-IP checks: the
    earliest, their attempts' count), so a backend no translation chose is never counted as reached."""
    action = step.action
    backends = _backend_addresses(ev, action.ip) if isinstance(action, TcpConnect) else set()
    if not backends:
        return []
    proto = "udp" if isinstance(action, UdpExchange) else "tcp"
    firsts: dict[int, Packet] = {}
    for p in _first_sightings(ev, step.probe, src, _from_round(ev, step)):
        if p.src == src and p.proto == proto and (p.dst, p.dport) in backends and p.sport is not None \
                and (proto == "udp" or ("S" in p.tcp_flags and "A" not in p.tcp_flags)) \
                and (p.sport not in firsts or p.time < firsts[p.sport].time):
            firsts[p.sport] = p
    taken = _others_attempts(ev, step, backends)
    found: list[Conn] = []
    for address in sorted(backends, key=str):
        sent = sorted((p for p in firsts.values() if (p.dst, p.dport) == address), key=lambda p: p.time)
        found += [Conn(proto, src, p.sport, p.dst, p.dport, p.time, p.length,
                       f"{_what(step, p).split(' to ')[0]} to {action.ip}:{action.port} (sent to {p.dst}:{p.dport})",
                       via=f"{action.ip}:{action.port}")
                  for p in sent[taken.get(address, 0):]]
    return sorted(found, key=lambda c: c.start)


def _backend_addresses(ev: Evidence, ip: str) -> set[tuple[str, int | None]]:
    """The pod addresses a Service IP translates to (pod IP, its number for the checked port)."""
    f = ev.facts
    if f.service and f.service.cluster_ip == ip:
        return {(p.ip, port_of(f, p)) for p in f.backends if p.ip}
    if f.dns_service and f.dns_service.cluster_ip == ip:
        return {(p.ip, 53) for p in f.dns_backends if p.ip}
    return set()


def _others_attempts(ev: Evidence, step: Step, addresses: set) -> dict[tuple[str, int | None], int]:
    """How many connections the probe's other steps made to each of `addresses` (tries that errored
    sent nothing) in the rounds the step is judged on: from its own on. A step looked at again in a
    later round made as many attempts in the round set aside."""
    counts: dict[tuple[str, int | None], int] = {}
    mine = _from_round(ev, step)
    for other in ev.plan.steps:
        action = other.action
        if other.key == step.key or other.probe != step.probe or not isinstance(action, TcpConnect) \
                or isinstance(action, UdpExchange) != isinstance(step.action, UdpExchange) \
                or (action.ip, action.port) not in addresses:
            continue
        theirs = _from_round(ev, other)
        made = 0 if theirs < mine else _tries(ev, other) * (2 if theirs > mine else 1)
        counts[(action.ip, action.port)] = counts.get((action.ip, action.port), 0) + made
    return counts


def _from_round(ev: Evidence, step: Step) -> int:
    """The first round the step's connections are judged from (a look again sets earlier ones aside)."""
    observed = ev.observed(step.key)
    return observed.from_round if observed else 0


def _tries(ev: Evidence, step: Step) -> int:
    """The connections a TCP or UDP step made: its tries with an outcome (one that errored sent nothing)."""
    observation = ev.observed(step.key)
    results = observation.result if observation and isinstance(observation.result, tuple) else ()
    return sum(1 for r in results if isinstance(r, TcpResult) and r.outcome is not TcpOutcome.ERROR)


def _first_sightings(ev: Evidence, role: str, src: str, first_round: int) -> list[Packet]:
    pod = _pod_captures(ev).get(role)
    if pod and not pod.blind:
        return [p for p in pod.packets_since(first_round) if p.interface != "lo"]
    node = _node_captures(ev).get(ev.probes[role].node)
    port = node.inventory.host_port_of(src) if node and node.inventory else None
    return [p for p in node.packets_since(first_round) if p.interface == port.name] if port else []


def _request_matcher(ev: Evidence, step: Step) -> Callable[[Packet], bool] | None:
    action = step.action
    if isinstance(action, UdpExchange):  # a DNS exchange by its query ids: the DNS steps query the same server
        observation = ev.observed(step.key)
        ids = {r.query_id for r in (observation.result or ()) if r.query_id is not None} if observation else set()
        return lambda p: (p.proto == "udp" and p.dst == action.ip and p.dport == action.port
                          and (p.dns is None or p.dns.id in ids))
    if isinstance(action, TcpConnect):
        return lambda p: (p.proto == "tcp" and p.dst == action.ip and p.dport == action.port
                          and "S" in p.tcp_flags and "A" not in p.tcp_flags)
    if isinstance(action, Ping):
        target = ev.probes[action.to_probe].ip if action.to_probe and action.to_probe in ev.probes else action.ip
        return lambda p: p.proto == "icmp" and p.icmp_type == 8 and p.dst == target and p.length == action.size + 28
    if isinstance(action, DnsQuery):
        observation = ev.observed(step.key)
        ids = {r.query_id for r in (observation.result or ()) if getattr(r, "query_id", None) is not None} \
            if observation else set()
        return lambda p: p.proto == "udp" and p.dns is not None and not p.dns.response and p.dns.id in ids
    return None


def _what(step: Step, p: Packet) -> str:
    if isinstance(step.action, UdpExchange):
        return f"datagram to {p.dst}:{p.dport}" + (" (DNS query)" if p.dns else "")
    if isinstance(step.action, TcpConnect):
        return f"SYN to {p.dst}:{p.dport}"
    if isinstance(step.action, Ping):
        return f"ping of {p.length} bytes to {p.dst}" + (" (DF)" if p.dont_fragment else "")
    return f"DNS query for {p.dns.qname if p.dns else '?'} to {p.dst}"


def _is_request(conn: Conn, p: Packet, targets: frozenset[str] = frozenset()) -> bool:
    """`p` is the connection's request (to its destination, or to one of `targets` it was
    translated to: a source port may be reused at once towards another address)."""
    if p.src != conn.src or p.proto != conn.proto or (targets and p.dst not in targets):
        return False
    if conn.proto == "icmp":
        return p.icmp_type == 8 and p.icmp_id == conn.key
    return p.sport == conn.key


def _reply_kind(conn: Conn, p: Packet, targets: frozenset[str] = frozenset()) -> Reply | None:
    if p.dst != conn.src:
        return None
    if p.proto == "icmp" and p.icmp_type in ICMP_ERRORS and p.quoted:
        q = p.quoted
        same = q.src == conn.src and q.proto == conn.proto and (q.icmp_id if conn.proto == "icmp" else q.sport) == conn.key
        return Reply.ICMP if same and (not targets or q.dst in targets) else None
    if p.proto != conn.proto or (targets and p.src not in targets):
        return None
    if conn.proto == "icmp":
        return Reply.ANSWER if p.icmp_type == 0 and p.icmp_id == conn.key else None
    if p.dport != conn.key:
        return None
    if conn.proto == "tcp" and "R" in p.tcp_flags:
        return Reply.RST
    return Reply.ANSWER


def _in_window(conn: Conn, p: Packet) -> bool:
    return conn.start - 0.5 <= p.time <= conn.start + WINDOW


def _translated(ev: Evidence, conn: Conn) -> str | None:
    """The destination a Service connection's request was rewritten to (DNAT): from the source
    node's connection tracking (which knows it even when the translated packet was dropped before
    any interface), else from a packet seen after the translation."""
    if conn.via:
        return f"{conn.dst}:{conn.dport}" if conn.dport is not None else conn.dst
    if not _is_service_ip(ev, conn.dst) and conn.dst not in {n.internal_ip for n in ev.facts.nodes}:
        return None
    entry = _tracked(ev, conn)  # exact: a reused source port can't fool it
    if entry:
        return (f"{entry.reply_src}:{entry.reply_sport}" if entry.reply_sport is not None else entry.reply_src) \
            if entry.translated else None
    role = next(r for r, p in ev.probes.items() if p.ip == conn.src)
    first = _first_sightings(ev, role, conn.src, 0)
    # What the source itself sent from this port is untranslated by definition (another step
    # may reuse the port at once towards a pod): a translation is a destination it never sent to.
    sent = {(p.dst, p.dport) for p in first if p.src == conn.src and p.proto == conn.proto and p.sport == conn.key}
    for capture in ev.captures:
        for p in capture.packets:
            if _in_window(conn, p) and _is_request(conn, p) and (p.dst, p.dport) not in sent | {(conn.dst, conn.dport)}:
                return f"{p.dst}:{p.dport}" if p.dport is not None else p.dst
    return None


def _left_untranslated(ev: Evidence, conn: Conn, node: str | None) -> bool:
    """A request still addressed to the Service IP on the node's overlay or underlay: it left as sent."""
    capture = _node_captures(ev).get(node)
    if not (capture and capture.inventory):
        return False
    outward = {i.name for i in capture.inventory.interfaces if i.kind is InterfaceKind.OVERLAY}
    under = capture.inventory.underlay(_node_ip(ev, node) or "0.0.0.0")
    outward |= {under.name} if under else set()
    return any(p.interface in outward and p.dst == conn.dst and _in_window(conn, p) and _is_request(conn, p)
               for p in capture.packets)


def _only_backend(ev: Evidence, ip: str) -> str | None:
    """A Service IP's one backend: where its connections go even when no capture saw the DNAT."""
    f = ev.facts
    for service, pods in ((f.service, f.backends), (f.dns_service, f.dns_backends)):
        ips = [p.ip for p in pods if p.ip]
        if service and service.cluster_ip == ip and len(ips) == 1:
            return ips[0]
    return None


def _tracked(ev: Evidence, conn: Conn) -> NatEntry | None:
    return next((e for c in ev.captures for e in c.nat
                 if (e.proto, e.src, e.sport, e.dst, e.dport) == (conn.proto, conn.src, conn.key, conn.dst, conn.dport)),
                None)


# --- the hops a connection should cross ----------------------------------------------------


def _node_captures(ev: Evidence) -> dict[str, Capture]:
    return {c.node: c for c in ev.captures if c.probe is None and c.node}


def _pod_captures(ev: Evidence) -> dict[str, Capture]:
    return {c.probe: c for c in ev.captures if c.probe}


def _node_ip(ev: Evidence, node: str | None) -> str | None:
    return next((n.internal_ip for n in ev.facts.nodes if n.name == node), None)


def _node_of(ev: Evidence, ip: str) -> str | None:
    f = ev.facts
    pods = {p.ip: p.node_name for p in (*f.backends, *f.dns_backends) if p.ip}
    pods |= {p.ip: p.node for p in ev.probes.values() if p.ip}
    pods |= {n.internal_ip: n.name for n in f.nodes if n.internal_ip}
    if ip in pods:
        return pods[ip]
    return next((node for node, c in _node_captures(ev).items()
                 if c.inventory and c.inventory.host_port_of(ip)), None)


def _delivered_on(ev: Evidence, conn: Conn, dst: str) -> str | None:
    """The node whose capture saw the request handed to a pod's veth (beyond the source's own):
    where `dst` lives when neither the API nor the inventories place it."""
    src_node = next((p.node for p in ev.probes.values() if p.ip == conn.src), None)
    targets = frozenset({conn.dst, dst})
    return next((node for node, c in _node_captures(ev).items()
                 if c.inventory and len(_veths_seen(c, conn, targets)) > (1 if node == src_node else 0)), None)


def _veths_seen(capture: Capture, conn: Conn, targets: frozenset[str]) -> list[Interface]:
    """The veths where `capture` saw the connection's request, in the order it crossed them."""
    names: list[str] = []
    for p in sorted(capture.packets, key=lambda p: p.time):
        if p.interface not in names and _in_window(conn, p) and _is_request(conn, p, targets):
            names.append(p.interface)
    found = (capture.inventory.by_name(name) for name in names)
    return [i for i in found if i and i.kind is InterfaceKind.VETH]


def _port(capture: Capture, conn: Conn, ip: str, targets: frozenset[str], beside: Interface | None = None
          ) -> Interface | None:
    """The host-side interface a pod IP hangs off: from the inventory, else the veth where the
    capture saw the connection (a neighbour entry the node never made, or that expired, hides the
    pod from the inventory, not from tcpdump): the first one for the source, the last other than
    `beside` (the source's own) for the destination."""
    known = capture.inventory.host_port_of(ip)
    if known:
        return known
    seen = _veths_seen(capture, conn, targets)
    if ip == conn.src:
        return seen[0] if seen else None
    return next((v for v in reversed(seen) if v != beside), None)


def _places(ev: Evidence, conn: Conn, role: str, dst: str) -> list[_Place]:
    src_node = ev.probes[role].node
    dst_node = _node_of(ev, dst) or (None if _is_service_ip(ev, dst) else _delivered_on(ev, conn, dst))
    pods, nodes = _pod_captures(ev), _node_captures(ev)
    places = []
    if role in pods:
        places.append(_pod_place(pods[role], role))
    unresolved = dst_node is None and _is_service_ip(ev, dst)  # which pod the Service chose is unknown
    if unresolved:
        entry = _tracked(ev, conn)  # untranslated in conntrack, or seen outside: it left as it was
        egress = (entry is not None and not entry.translated) or _left_untranslated(ev, conn, src_node)
        places += _source_node_places(ev, nodes.get(src_node), src_node, conn, dst, not egress)
    else:
        places += _source_node_places(ev, nodes.get(src_node), src_node, conn, dst, dst_node == src_node)
    if dst_node != src_node and not unresolved:
        places += _destination_node_places(ev, nodes.get(dst_node), dst_node, conn, dst)
    dst_role = next((r for r, p in ev.probes.items() if p.ip == dst), None)
    if dst_role in pods:
        places.append(_pod_place(pods[dst_role], dst_role))
    return places


def _pod_place(capture: Capture, role: str) -> _Place:
    return _Place(Hop(capture.node, "eth0", HopKind.POD, blind=capture.blind, pod=role), capture)


def _blind_node(ev: Evidence, node: str | None, capture: Capture | None) -> _Place:
    if node is None:
        why = "the destination is outside the captured nodes"
    elif capture is not None and capture.blind:
        why = capture.blind
    elif any(n.name == node and not n.ready for n in ev.facts.nodes):
        why = f"{node} is NotReady: no probe can run there"
    else:
        why = f"no capture on {node}"
    return _Place(Hop(node, "(node)", HopKind.UNDERLAY, blind=why), None)


def _hop(capture: Capture, node: str, interface: Interface | None, kind: HopKind, missing: str) -> _Place:
    if interface is None:
        return _Place(Hop(node, missing, kind, blind=f"{node} has no such interface"), capture)
    return _Place(Hop(node, interface.name, kind), capture)


def _source_node_places(ev: Evidence, capture: Capture | None, node: str | None, conn: Conn, dst: str,
                        stays: bool) -> list[_Place]:
    if capture is None or capture.inventory is None:
        return [_blind_node(ev, node, capture)]
    inv = capture.inventory
    targets = frozenset({conn.dst, dst})
    veth = _port(capture, conn, conn.src, targets)
    places = [_hop(capture, node, veth, HopKind.VETH, "veth")]
    bridge = _bridge_of(inv, veth)
    if bridge:
        places.append(_hop(capture, node, bridge, HopKind.BRIDGE, "bridge"))
    if stays:  # to a pod on this node (or to an unknown one: no way out to show)
        dst_veth = _port(capture, conn, dst, targets, beside=veth)
        return places + [_hop(capture, node, dst_veth, HopKind.VETH, "veth")] if dst_veth else places
    return places + _egress(capture, node, inv, _node_ip(ev, node), dst)


def _egress(capture: Capture, node: str, inv: Inventory, node_ip: str | None, dst: str) -> list[_Place]:
    """The overlay and underlay a packet to `dst` leaves by; the usual ones when no route says. A
    route to another node's pods through a veth names a CNI's host device (Cilium's `cilium_host`),
    which its BPF programs bypass: such a packet leaves by the tunnel, else the underlay."""
    route = inv.route_to(dst)
    device = inv.by_name(route.device) if route else None
    host_device = device and device.kind is InterfaceKind.VETH and not (node_ip and node_ip in device.ips())
    device = None if host_device else device
    overlay = device if device and device.kind is InterfaceKind.OVERLAY else (
        None if device else next((i for i in inv.interfaces if i.kind is InterfaceKind.OVERLAY), None))
    under = (inv.by_name(overlay.link) if overlay and overlay.link else None) or (
        device if device and device.kind is not InterfaceKind.OVERLAY else None) or (
        inv.underlay(node_ip) if node_ip else None)
    places = [_hop(capture, node, overlay, HopKind.OVERLAY, "overlay")] if overlay else []
    if overlay and overlay.tunnel not in (None, *_DECODED) and under:  # IP-in-IP (Calico's tunl0), WireGuard
        why = f"{overlay.name} encapsulates without UDP (IP-in-IP or WireGuard): its packets are not decoded here"
        return places + [_Place(Hop(node, under.name, HopKind.UNDERLAY, blind=why), capture)]
    return places + [_hop(capture, node, under, HopKind.UNDERLAY, "underlay")]


_DECODED = ("vxlan", "geneve")  # the tunnels whose inner packets the capture follows on the underlay


def _destination_node_places(ev: Evidence, capture: Capture | None, node: str | None, conn: Conn,
                             dst: str) -> list[_Place]:
    if capture is None or capture.inventory is None:
        return [_blind_node(ev, node, capture)]
    inv = capture.inventory
    node_ip = _node_ip(ev, node)
    if dst == node_ip:
        return [_hop(capture, node, inv.underlay(dst), HopKind.UNDERLAY, "underlay")]
    back = _egress(capture, node, inv, node_ip, conn.src)  # the way back is the way in
    veth = _port(capture, conn, dst, frozenset({conn.dst, dst}))
    bridge = _bridge_of(inv, veth)
    inward = [*reversed(back), *([_hop(capture, node, bridge, HopKind.BRIDGE, "bridge")] if bridge else [])]
    return inward + [_hop(capture, node, veth, HopKind.VETH, "veth")]


def _bridge_of(inv: Inventory, port: Interface | None) -> Interface | None:
    bridge = inv.by_name(port.master) if port and port.master else None
    return bridge if bridge and bridge.kind is InterfaceKind.BRIDGE else None


# --- what each hop saw, and the verdict ----------------------------------------------------


def _seen(place: _Place, conn: Conn, targets: frozenset[str]) -> Hop:
    hop = place.hop
    if hop.blind or place.capture is None:
        return hop
    packets = [p for p in place.capture.by_endpoint.get((conn.src, conn.key), ()) if p.interface == hop.interface
               and _in_window(conn, p)]
    requests = [p for p in packets if _is_request(conn, p, targets)]
    replies = [kind for p in packets if (kind := _reply_kind(conn, p, targets))]
    reply = next((r for r in (Reply.ANSWER, Reply.RST, Reply.ICMP) if r in replies), None)
    return replace(hop, request=bool(requests), reply=reply, note=_note(conn, requests))


def _note(conn: Conn, requests: list[Packet]) -> str:
    notes = []
    moved = next((p for p in requests if (p.dst, p.dport) != (conn.dst, conn.dport)), None)
    if moved:
        notes.append(f"DNAT → {moved.dst}" + (f":{moved.dport}" if moved.dport is not None else ""))
    tunnelled = next((p.encap for p in requests if p.encap), None)
    if tunnelled:
        notes.append(f"{tunnelled.kind.upper()} {tunnelled.outer_src} → {tunnelled.outer_dst}")
    return ", ".join(notes)


_HOP_KINDS = {InterfaceKind.VETH: HopKind.VETH, InterfaceKind.BRIDGE: HopKind.BRIDGE,
              InterfaceKind.OVERLAY: HopKind.OVERLAY}


def _completed(ev: Evidence, conn: Conn, targets: frozenset[str], hops: tuple[Hop, ...]) -> tuple[Hop, ...]:
    """The hops plus every interface where a node's capture saw the connection though its routes
    did not predict it: a hop where the packet was seen is always drawn, among its node's hops in
    the order the request crossed them (a node not in the path goes before the destination pod)."""
    found = list(hops)
    for node, capture in _node_captures(ev).items():
        crossed = _crossed(capture, conn, targets)
        drawn = {h.interface for h in found if h.node == node and h.kind is not HopKind.POD}
        for name, t in crossed:
            if name == "lo" or name in drawn:
                continue
            interface = capture.inventory.by_name(name) if capture.inventory else None
            underlay = interface is None or _node_ip(ev, node) in interface.ips()  # a veth, in a netns lab
            kind = HopKind.UNDERLAY if underlay else _HOP_KINDS.get(interface.kind, HopKind.UNDERLAY)
            found.insert(_slot(found, node, t, dict(crossed)), _seen(_Place(Hop(node, name, kind), capture), conn, targets))
    return tuple(found)


def _crossed(capture: Capture, conn: Conn, targets: frozenset[str]) -> list[tuple[str, float]]:
    """Each interface where `capture` saw the connection (request or answer), with the first time."""
    first: dict[str, float] = {}
    for p in capture.by_endpoint.get((conn.src, conn.key), ()):
        if _in_window(conn, p) and (_is_request(conn, p, targets) or _reply_kind(conn, p, targets)):
            first[p.interface] = min(first.get(p.interface, p.time), p.time)
    return sorted(first.items(), key=lambda item: item[1])


def _slot(hops: list[Hop], node: str, t: float, times: dict[str, float]) -> int:
    """Where a hop of `node` first seen at `t` goes: after that node's hops that saw the
    connection earlier (`times`: first sighting per interface), else before its first hop; a node
    not in the path goes before a final pod hop."""
    own = [i for i, h in enumerate(hops) if h.node == node and h.kind is not HopKind.POD and not h.blind]
    if not own:
        return len(hops) - 1 if hops and hops[-1].kind is HopKind.POD and len(hops) > 1 else len(hops)
    earlier = [i for i in own if times.get(hops[i].interface, float("inf")) <= t]
    return earlier[-1] + 1 if earlier else own[0]


def _follow(ev: Evidence, step: Step, conn: Conn) -> HopPath:
    dst = (_translated(ev, conn) or _only_backend(ev, conn.dst) or conn.dst).split(":")[0]
    targets = frozenset({conn.dst, dst})
    hops = tuple(_seen(place, conn, targets) for place in _places(ev, conn, step.probe, dst))
    hops = _completed(ev, conn, targets, hops)
    if conn.via:
        hops = _at_the_socket(ev, conn, hops)
    outcome, at = _outcome(hops)
    refusal = _refusal(ev, step, conn, hops, outcome, at, dst)
    if refusal is not None and refusal.kind in (RefusalKind.REJECT, RefusalKind.NO_ENDPOINTS):
        outcome, at = PathOutcome.REJECTED, _rejecting_hop(hops, refusal, at)
    cause, params = _cause(ev, step, conn, hops, outcome, at, dst, refusal)
    flow = f"{conn.src}:{conn.key} → {conn.dst}" + (f":{conn.dport}" if conn.dport is not None else "") + f" {conn.proto}"
    return HopPath(step.key, flow, hops, outcome, cause, at, params=_params_text(params), refusal=refusal)


def _at_the_socket(ev: Evidence, conn: Conn, hops: tuple[Hop, ...]) -> tuple[Hop, ...]:
    """The first hop that saw a connection translated at the socket says so: a normal path, whose
    Service IP never was on the wire (nor in any node's connection tracking)."""
    first = next((i for i, h in enumerate(hops) if h.request), None)
    if first is None:
        return hops
    node = next((p.node for p in ev.probes.values() if p.ip == conn.src), None)
    capture = _node_captures(ev).get(node)
    cni = cluster_kind.cni_of(capture.inventory if capture else None)
    by = f" by {_CNI_NAMES.get(cni, cni.value)}" if cni else ""
    note = f"translated at the socket{by}: {conn.via} → {conn.dst}:{conn.dport}, no Service IP on the wire"
    hop = hops[first]
    return (*hops[:first], replace(hop, note=", ".join(filter(None, (note, hop.note)))), *hops[first + 1:])


_CNI_NAMES = {Cni.CILIUM: "Cilium", Cni.CALICO: "Calico", Cni.ANTREA: "Antrea"}


def _rejecting_hop(hops: tuple[Hop, ...], refusal: Refusal, at: int | None) -> int | None:
    """The last hop of the rejecting node that saw the request or the error: where the reject rule
    stood, even when the error was only matched on its way back nearer the source (after
    conntrack's un-NAT)."""
    own = [i for i, h in enumerate(hops) if h.node == refusal.node and (h.request or h.reply)]
    return own[-1] if own else at


def _outcome(hops: tuple[Hop, ...]) -> tuple[PathOutcome, int | None]:
    """The verdict, and the hop it points at: where the reset or ICMP error came from, or the
    first hop that missed the request (or, going back, the answer)."""
    looked = [i for i, h in enumerate(hops) if not h.blind]
    if not looked:
        return PathOutcome.UNKNOWN, None
    kind = hops[looked[0]].reply
    if kind is Reply.ANSWER:
        return PathOutcome.DELIVERED, None
    if kind is not None:
        at = max(i for i, h in enumerate(hops) if h.reply is kind)
        return (PathOutcome.REFUSED if kind is Reply.RST else PathOutcome.ICMP_ERROR), at
    answered = [i for i, h in enumerate(hops) if h.reply]
    if answered:
        return PathOutcome.REPLY_LOST, min(answered) - 1
    reached = [i for i, h in enumerate(hops) if h.request]
    if not reached:
        return PathOutcome.UNKNOWN, None
    beyond = [i for i in range(max(reached) + 1, len(hops))]
    # A bridge does not see what it only switches between two of its ports: look past it.
    loud = [i for i in beyond if hops[i].kind is not HopKind.BRIDGE]
    return PathOutcome.DROPPED, (loud or beyond or [max(reached)])[0]


# The most telling of a step's failed connections: one that was answered says who refused it. A
# node's ICMP errors are rate-limited (per destination, a few then one a second), so the other
# connections of the same rejected flow often vanish in silence: they are its twins, not drops.
_ANSWERED = (PathOutcome.REJECTED, PathOutcome.REFUSED, PathOutcome.ICMP_ERROR)


def _step_path(ev: Evidence, step: Step) -> HopPath | None:
    if step.probe not in ev.probes or _request_matcher(ev, step) is None:
        return None
    conns = _conns(ev, step)
    if not conns:
        what = {"what": step.title or step.key}
        kept = _kept_by_sender(ev, step)
        if kept:  # a DF ping larger than the pod's own route MTU (Cilium's 1450 route on a 1500 eth0)
            return HopPath(step.key, step.title or step.key, (), PathOutcome.UNKNOWN, "mtu-known",
                           params=_params_text(what | {"size": str(kept)}))
        refused = _socket_refusal_cause(ev, step)
        if refused:
            return refused
        gateway = _gateway_cause(ev, step)
        if gateway:
            return gateway
        return HopPath(step.key, step.title or step.key, (), PathOutcome.UNKNOWN, "not-seen",
                       params=_params_text(what))
    followed = [_follow(ev, step, c) for c in conns]
    longest = max(followed, key=lambda p: sum(1 for h in p.hops if h.request))  # a cross-node one, if any
    failed = [p for p in followed if p.outcome is not PathOutcome.DELIVERED]
    worst = min(failed, key=lambda p: _ANSWERED.index(p.outcome) if p.outcome in _ANSWERED else len(_ANSWERED),
                default=longest)
    same = sum(1 for p in followed if p.cause == worst.cause)
    return replace(worst, connections=len(followed), same_outcome=same, backends=_spread(ev, conns))


def _socket_refusal_cause(ev: Evidence, step: Step) -> HopPath | None:
    """A Service without a ready backend where it is translated at the socket: Cilium's connect and
    sendmsg hooks refuse it (EHOSTUNREACH) before any packet exists. Said at the source's own hop."""
    action = step.action
    service = action.server or (ev.facts.dns_service.cluster_ip if ev.facts.dns_service else None) \
        if isinstance(action, DnsQuery) else action.ip if isinstance(action, TcpConnect) else None
    node = ev.probes[step.probe].node
    proxy = socket_proxy(ev, node)
    if not (service and proxy and _is_service_ip(ev, service) and not _ready_backends(ev, service)):
        return None
    hop = Hop(node, "eth0", HopKind.POD, pod=step.probe, note=f"refused at the socket by {proxy}: nothing on the wire")
    port = f":{action.port}" if isinstance(action, TcpConnect) else ":53"
    what = f"{'SYN' if isinstance(action, TcpConnect) and not isinstance(action, UdpExchange) else 'datagram'} " \
           f"to {service}{port}"
    params = {"what": what, "dst": service, "hop": hop.label, "node": node or "?",
              "answer": f"host unreachable from {proxy} at the socket (EHOSTUNREACH, no packet sent)"}
    refusal = Refusal(RefusalKind.NO_ENDPOINTS, None, node, "host unreachable at the socket")
    return HopPath(step.key, f"{ev.probes[step.probe].ip} → {service}{port}", (hop,), PathOutcome.REJECTED,
                   "no-endpoints", 0, params=_params_text(params), refusal=refusal)


CALICO_GATEWAY = "169.254.1.1"  # every Calico pod's default gateway, answered by proxy ARP on its cali veth


def _gateway_cause(ev: Evidence, step: Step) -> HopPath | None:
    """Nothing left a Calico pod and every try ended unreachable: the kernel never resolved the
    pod's gateway, which the node answers by proxy ARP on the pod's cali veth (proxy_arp off there,
    or the veth gone). ARP is not in the captures (IPv4 only): the silence and the error say it."""
    node = ev.probes[step.probe].node
    capture = _node_captures(ev).get(node)
    observation = ev.observed(step.key)
    results = observation.result if observation and isinstance(observation.result, tuple) else ()
    tcp = [r for r in results if isinstance(r, TcpResult)]
    if not (tcp and all(r.outcome is TcpOutcome.UNREACHABLE for r in tcp)) or \
            cluster_kind.cni_of(capture.inventory if capture else None) is not Cni.CALICO:
        return None
    veth = capture.inventory.host_port_of(ev.probes[step.probe].ip or "")
    hop = Hop(node, "eth0", HopKind.POD, pod=step.probe, note=f"no ARP answer for {CALICO_GATEWAY}")
    params = {"what": f"{'datagram' if isinstance(step.action, UdpExchange) else 'SYN'} to {step.action.ip}:"
                      f"{step.action.port}", "hop": hop.label, "node": node or "?",
              "why": f"{node}'s {veth.name if veth else 'cali veth of the pod'}"}
    return HopPath(step.key, f"{ev.probes[step.probe].ip} → {step.action.ip}:{step.action.port}", (hop,),
                   PathOutcome.DROPPED, "gateway-unanswered", 0, params=_params_text(params))


def _ready_backends(ev: Evidence, ip: str) -> bool:
    f = ev.facts
    if f.service and f.service.cluster_ip == ip:
        return not _no_ready_endpoints(ev, ip) and bool(f.backends)
    if f.dns_service and f.dns_service.cluster_ip == ip:
        return any(p.ready for p in f.dns_backends)
    return True


def _kept_by_sender(ev: Evidence, step: Step) -> int | None:
    """The MTU a DF ping's own kernel refused it for (nothing sent: it knows the path MTU), else None."""
    observation = ev.observed(step.key)
    result = observation.result if observation else None
    if isinstance(step.action, Ping) and isinstance(result, PingResult) and result.outcome is PingOutcome.FRAG_NEEDED:
        return result.mtu or step.action.size + 28
    return None


# --- who turned it away ---------------------------------------------------------------------

RESET = "TCP reset"


def _refusal(ev: Evidence, step: Step, conn: Conn, hops: tuple[Hop, ...], outcome: PathOutcome, at: int | None,
             dst: str) -> Refusal | None:
    """Who turned the connection away, from where the answer came from and who sent it."""
    if outcome is PathOutcome.DELIVERED:
        return None
    if outcome is PathOutcome.REFUSED:
        return _reset(hops, at, dst)
    if outcome is PathOutcome.ICMP_ERROR:
        return _icmp_refusal(ev, ev.probes[step.probe].node, conn, hops, at, dst)
    if outcome is PathOutcome.UNKNOWN:
        return Refusal(RefusalKind.UNKNOWN)
    return Refusal(RefusalKind.SILENT, node=hops[at].node)


def _reset(hops: tuple[Hop, ...], at: int, dst: str) -> Refusal:
    """A reset is the pod's when the destination's end of the path sent it; a node's reject when a
    watched hop beyond the one it came from never saw the request; unknown when all beyond is blind
    (a reject rule forges the pod's address as its source, so the address alone proves nothing)."""
    if at == len(hops) - 1:
        return Refusal(RefusalKind.POD, dst, hops[at].node, RESET)
    if all(h.blind for h in hops[at + 1:]):
        return Refusal(RefusalKind.UNKNOWN, dst, how=RESET)
    return Refusal(RefusalKind.REJECT, dst, hops[at].node, RESET)


def _icmp_refusal(ev: Evidence, src_node: str | None, conn: Conn, hops: tuple[Hop, ...], at: int,
                  dst: str) -> Refusal:
    """An ICMP error told by its sender. Errors are matched to the connection by their quoted
    header; for a Service IP conntrack rewrites the sender of an error into the Service IP, so the
    real sender is the one a capture saw before that. The destination's own stack refused it; a
    node or router could not deliver it (network/host unreachable, fragmentation needed); the
    source node's Service rules have no endpoint; or a node's reject rule answered for the pod."""
    errors = _errors(ev, conn, frozenset({conn.dst, dst}))
    if not errors:
        return Refusal(RefusalKind.UNKNOWN)
    service = _is_service_ip(ev, conn.dst)
    real = next((p for p in errors if not (service and p.src == conn.dst)), None)
    error = real or errors[0]
    sender = real.src if real else None
    seen_as = conn.dst if service and any(p.src == conn.dst for p in errors) else None
    node = _owner(ev, sender) if sender else None
    how = f"ICMP {_icmp_text(error)}"
    if error.icmp_type != 3 or error.icmp_code == 4:
        return Refusal(RefusalKind.UNREACHABLE, sender or seen_as, node or hops[at].node, how)
    if error.icmp_code in _PROHIBITED:  # a filter's answer, even in the pod's name (Cilium's "packet filtered")
        return Refusal(RefusalKind.REJECT, sender, node or _origin(hops, at), how, seen_as)
    if sender == dst:
        return Refusal(RefusalKind.POD, sender, _node_of(ev, dst) or hops[at].node, how)
    if error.icmp_code in (0, 1):
        return Refusal(RefusalKind.UNREACHABLE, sender or seen_as, node or hops[at].node, how)
    if service and _endpointless(ev, conn, errors, node, src_node, sender):
        return Refusal(RefusalKind.NO_ENDPOINTS, sender or conn.dst, node or src_node, how)
    return Refusal(RefusalKind.REJECT, sender, node or _origin(hops, at), how, seen_as)


_PROHIBITED = (9, 10, 13)  # network, host, administratively prohibited: no stack refuses with those


def _errors(ev: Evidence, conn: Conn, targets: frozenset[str]) -> list[Packet]:
    """The ICMP errors about the connection (by their quoted header), in every capture, earliest first."""
    return sorted((p for c in ev.captures for p in c.packets
                   if p.proto == "icmp" and _in_window(conn, p) and _reply_kind(conn, p, targets) is Reply.ICMP),
                  key=lambda p: p.time)


def _endpointless(ev: Evidence, conn: Conn, errors: list[Packet], node: str | None, src_node: str | None,
                  sender: str | None) -> bool:
    """The Service IP has no endpoint in the rejecting node's rules: nothing translated it (no DNAT
    in the packets or conntrack, no error quoting a translated destination) and the EndpointSlices
    list no ready endpoint, or the reject came from the source's node (whose rules translate its
    connections) or as the Service IP itself while no NetworkPolicy denies every backend (a policy
    rejecting right after the DNAT on the source's node leaves the same packets: the error is made
    and rewritten before any interface, and conntrack never confirms a rejected connection)."""
    if _translated(ev, conn) or any(p.quoted.dst != conn.dst for p in errors):
        return False
    if _no_ready_endpoints(ev, conn.dst):
        return True
    return (node == src_node or sender is None) and _policy_denial(ev, conn.dst) is None


def _no_ready_endpoints(ev: Evidence, ip: str) -> bool:
    f = ev.facts
    if not (f.service and f.service.cluster_ip == ip and f.slices is not None):
        return False
    return not any(e.ready for s in f.slices for e in s.endpoints)


def _owner(ev: Evidence, ip: str) -> str | None:
    """The node an address belongs to: one of its interfaces' (cni0, flannel.1, eth0), or its node IP."""
    holder = next((node for node, c in _node_captures(ev).items() if c.inventory and ip in c.inventory.local_ips()),
                  None)
    return holder or next((n.name for n in ev.facts.nodes if n.internal_ip == ip), None)


def _origin(hops: tuple[Hop, ...], at: int) -> str | None:
    """The node an error came from when its sender is not seen: the unwatched node right beyond the
    last hop that saw the request, else that hop's node."""
    last = max((i for i, h in enumerate(hops) if h.request), default=at)
    beyond = hops[last + 1] if last + 1 < len(hops) else None
    return beyond.node if beyond is not None and beyond.blind and beyond.node else hops[last].node


# --- causes --------------------------------------------------------------------------------


def _cause(ev: Evidence, step: Step, conn: Conn, hops: tuple[Hop, ...], outcome: PathOutcome, at: int | None,
           dst: str, refusal: Refusal | None) -> tuple[str, dict[str, str]]:
    params = {"what": conn.what, "dst": dst}
    if at is not None:
        params |= {"hop": hops[at].label, "node": hops[at].node or "?"}
    last = max((i for i, h in enumerate(hops) if h.request), default=None)
    if last is not None:
        params["last"] = hops[last].label
    if outcome is PathOutcome.DELIVERED:
        return "delivered", params
    if outcome is PathOutcome.UNKNOWN:
        blind = next((h for h in hops if h.blind), None)
        return ("blind", params | {"why": blind.blind}) if blind else ("not-seen", params)
    if refusal is not None and refusal.how:
        params |= {"sender": _sender_text(refusal), "icmp": refusal.how}
    if outcome is PathOutcome.REFUSED:
        why = next((h.blind for h in hops[at + 1:] if h.blind), "")
        return ("refused-by-pod", params) if refusal.kind is RefusalKind.POD else ("refused-unseen", params | {"why": why})
    if outcome is PathOutcome.REJECTED:
        return _reject_cause(ev, refusal, params)
    if outcome is PathOutcome.ICMP_ERROR:
        return _icmp_cause(conn, refusal, params)
    if outcome is PathOutcome.REPLY_LOST:
        return _reply_lost_cause(ev, conn, hops, at, params)
    return _drop_cause(ev, step, conn, hops, at, last, params)


def _reply_lost_cause(ev: Evidence, conn: Conn, hops, at, params) -> tuple[str, dict[str, str]]:
    """The answer vanished on the way back: say so, naming the node without a route back."""
    answering = hops[at + 1].node
    if answering and _no_route(ev, answering, conn.src):
        return "reply-no-route", params | {"node": answering, "dst": conn.src}
    return "reply-lost", params


def _reject_cause(ev: Evidence, refusal: Refusal, params: dict[str, str]) -> tuple[str, dict[str, str]]:
    """A node answered for the pod: its Service rules without an endpoint, a NetworkPolicy its
    enforcer rejects rather than drops (kube-router; Calico/Antrea Reject), or another reject rule."""
    params = params | {"node": refusal.node or "?"}
    if refusal.kind is RefusalKind.NO_ENDPOINTS:
        return "no-endpoints", params | {"answer": f"{refusal.how} from {_sender_text(refusal)}"}
    if refusal.how == RESET:
        return "refused-by-node", params
    denied = _policy_denial(ev, params["dst"])
    return ("policy-reject" if denied else "firewall-reject"), params


def _icmp_cause(conn: Conn, refusal: Refusal, params: dict[str, str]) -> tuple[str, dict[str, str]]:
    if refusal.how == f"ICMP {_ICMP_NAMES[(3, 4)]}":
        return "mtu", params | {"size": str(conn.size)}
    return "icmp-unreachable", params


def _sender_text(refusal: Refusal) -> str:
    if refusal.sender and refusal.seen_as:
        return f"{refusal.sender}, seen by the client as {refusal.seen_as}"
    if refusal.seen_as:
        return f"{refusal.seen_as} (conntrack rewrote the real sender into the Service IP)"
    return refusal.sender or "?"


_ICMP_NAMES = {(3, 0): "network unreachable", (3, 1): "host unreachable", (3, 3): "port unreachable",
               (3, 4): "fragmentation needed", (3, 9): "network prohibited", (3, 10): "host prohibited",
               (3, 13): "administratively prohibited", (11, 0): "TTL exceeded"}


def _icmp_text(p: Packet) -> str:
    return _ICMP_NAMES.get((p.icmp_type, p.icmp_code), f"type {p.icmp_type} code {p.icmp_code}")


def _is_service_ip(ev: Evidence, ip: str) -> bool:
    services = (ev.facts.service, ev.facts.dns_service)
    return any(s and s.cluster_ip == ip for s in services)


def _drop_cause(ev: Evidence, step: Step, conn: Conn, hops, at, last, params) -> tuple[str, dict[str, str]]:
    hop = hops[at]
    src_node = ev.probes[step.probe].node
    if step.expect is Expect.DROPPED:
        return "local-policy-drop", params | {"node": src_node or "?"}
    if _untranslated(ev, conn, hops):
        proxy = socket_proxy(ev, src_node)
        params |= {"node": src_node or "?"}
        return ("service-map-stale", params | {"proxy": proxy}) if proxy else ("untranslated", params)
    if _endpointless_silence(ev, conn, hops, src_node):
        return "no-endpoints", params | {"node": src_node or "?", "answer": SILENT_REJECT}
    if hop.blind and hop.kind is HopKind.VETH and hop.node != src_node and _no_route(ev, hop.node, params["dst"]):
        return "no-pod-route", params  # the destination node knows no way to its own pod (Calico's /32)
    if hop.blind:
        return ("node-not-ready" if "NotReady" in hop.blind else "blind"), params | {"why": hop.blind}
    own_port = _source_port(hops, last, src_node)
    if last == len(hops) - 1 and hops[last].kind in (HopKind.VETH, HopKind.POD) and not own_port:
        return "no-answer", params
    if own_port and at == last:  # nothing beyond the source's veth: where the Service sent it is unknown
        params |= {"hop": f"the backend {params['dst']} was translated to (no capture or conntrack entry says which)"}
    tunnel = next((h.note for h in hops if "VXLAN" in h.note or "GENEVE" in h.note), "")
    pod_ip = not _is_service_ip(ev, params["dst"])
    if pod_ip and hops[last].node == src_node and _no_route(ev, src_node, params["dst"]):
        return "no-route", params | {"node": src_node}
    if hop.node != src_node and hop.kind is HopKind.UNDERLAY:
        return ("overlay-blocked" if tunnel else "fabric-drop"), params | {"tunnel": tunnel, "from": src_node or "?"}
    if hop.node != src_node and hop.kind is HopKind.OVERLAY:
        return "decap-drop", params
    denial = _policy_denial(ev, params["dst"])
    if denial:
        return denial, params
    return ("destination-drop" if hop.node != src_node or at == len(hops) - 1 else "source-drop"), params


SILENT_REJECT = "no ICMP error came back: the kernel rate-limits them, a few per second to each client"


def _source_port(hops: tuple[Hop, ...], i: int | None, src_node: str | None) -> bool:
    """Hop `i` is the source pod's own veth on its node (the first veth of the path), not a destination's."""
    veths = [j for j, h in enumerate(hops) if h.kind is HopKind.VETH and h.node == src_node]
    return i is not None and bool(veths) and veths[0] == i


def _endpointless_silence(ev: Evidence, conn: Conn, hops: tuple[Hop, ...], src_node: str | None) -> bool:
    """A connection to a Service IP without a ready backend that vanished on the source's node,
    untranslated: the node's Service rules reject it, and the kernel's ICMP rate limit ate this
    connection's error (a burst of connections to such a Service gets a few errors, then silence)."""
    if not _is_service_ip(ev, conn.dst) or _ready_backends(ev, conn.dst) or _translated(ev, conn):
        return False
    return not any(h.request and h.node != src_node for h in hops) and not _left_untranslated(ev, conn, src_node)


def _untranslated(ev: Evidence, conn: Conn, hops: tuple[Hop, ...]) -> bool:
    """A Service IP that no DNAT touched: conntrack shows it untranslated, or it left its node
    still addressed to the Service IP."""
    if not _is_service_ip(ev, conn.dst) or _translated(ev, conn):
        return False
    entry = _tracked(ev, conn)
    left = any(h.request and h.kind in (HopKind.OVERLAY, HopKind.UNDERLAY) for h in hops)
    return left or (entry is not None and not entry.translated)


def socket_proxy(ev: Evidence, node: str | None) -> str | None:
    """Who translates Service IPs at the socket, when no kube-proxy does: Cilium's kube-proxy
    replacement, Calico's eBPF data plane (the API's answer, else the node's devices: a Cilium node
    without kube-proxy's DaemonSet)."""
    kind = ev.facts.cluster
    if kind is not None and kind.proxy.name in (ServiceProxy.CILIUM, ServiceProxy.CALICO):
        return _CNI_NAMES[Cni(kind.proxy.name.value)]
    if kind is not None and kind.proxy.name is ServiceProxy.KUBE_PROXY:
        return None
    capture = _node_captures(ev).get(node)
    return "Cilium" if cluster_kind.cni_of(capture.inventory if capture else None) is Cni.CILIUM else None


def _no_route(ev: Evidence, node: str | None, dst: str) -> bool:
    """The node has no route to a pod IP: none at all, or only its default route while it has an
    overlay device (a tunnelling CNI routes pod CIDRs through it) or while the pod's node routes
    pods to this node by its node IP (routed CNIs: flannel's host-gw, Calico's BGP routes; a cloud
    that routes pod IPs itself, as the AWS VPC CNI, has no such route)."""
    capture = _node_captures(ev).get(node)
    if not (capture and capture.inventory) or "route" in capture.inventory.unread:
        return False  # an unread route table is no missing route
    inv = capture.inventory
    route = inv.route_to(dst)
    tunnelling = any(i.kind is InterfaceKind.OVERLAY for i in inv.interfaces)
    defaulted = route is not None and route.destination == "default"
    return route is None or route.device is None or (defaulted and (tunnelling or _routed_by_peer(ev, node, dst)))


def _routed_by_peer(ev: Evidence, node: str | None, dst: str) -> bool:
    """`dst`'s node routes some pod network to `node` through `node`'s IP: pod routes are per peer."""
    peer = _node_captures(ev).get(_node_of(ev, dst))
    node_ip = _node_ip(ev, node)
    return bool(peer and peer.inventory and node_ip and peer.node != node and any(
        r.via == node_ip and r.destination != "default" for r in peer.inventory.routes))


def _policy_denial(ev: Evidence, dst: str) -> str | None:
    """"policy-egress" or "policy-ingress" when the policy engine denies the flow to `dst`: a pod,
    or a Service IP whose every backend is denied (whichever the translation chose)."""
    f = ev.facts
    groups = ((f.service, f.backends, f.policy), (f.dns_service, f.dns_backends, f.dns_policy))
    for service, pods, flows in groups:
        names = {p.name for p in pods if p.ip == dst or (service and service.cluster_ip == dst)}
        denied = [flow for flow in flows or () if flow.backend in names and not flow.verdict.allowed]
        if names and len(denied) == len(names):
            return "policy-egress" if not denied[0].verdict.egress.allowed else "policy-ingress"
    return None


def _with_mtu(found: list[HopPath], ev: Evidence) -> Iterable[HopPath]:
    """A big ping dropped where a small one from the same probe to the same target got through:
    the path MTU."""
    steps = {p.step_key: ev.plan.step(p.step_key) for p in found}
    pings = {key: step for key, step in steps.items() if isinstance(step.action, Ping)}
    delivered = {_ping_pair(pings[p.step_key]) for p in found
                 if p.step_key in pings and p.outcome is PathOutcome.DELIVERED}
    for path in found:
        step = pings.get(path.step_key)
        size = step.action.size + 28 if step else 0
        if size > BIG and path.outcome is PathOutcome.DROPPED and _ping_pair(step) in delivered:
            yield replace(path, cause="mtu", params=path.params + (("size", str(size)),))
        else:
            yield path


def _ping_pair(step: Step) -> tuple[str | None, str | None]:
    return step.probe, step.action.to_probe or step.action.ip


def _params_text(params: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, str(v)) for k, v in params.items()))
