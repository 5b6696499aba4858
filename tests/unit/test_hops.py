"""netdoctor.judge.hops on synthetic captures of the lab's topology: two flannel nodes (eth0
underlay 172.30.0.N/24, cni0 bridge 10.244.N.1/24, flannel.1 VXLAN on eth0 port 8472, one veth
per pod), a source probe on node-1 (captured in its own eth0 too) and backends on node-2.

A `Scene` collects the packets each capture point saw; `flow()` lays one connection's request
along a route of (capture point, interface) and its answer back along the same route."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

import pytest

from netdoctor.judge.hops import paths, refusal, spread
from netdoctor.model import (
    Capture,
    DnsQuery,
    Evidence,
    Facts,
    HopKind,
    Kind,
    Layer,
    Observation,
    PathOutcome,
    Ping,
    Plan,
    PlannedProbe,
    PolicyFlow,
    Ref,
    Reply,
    RunningProbe,
    Step,
    TcpConnect,
)
from netdoctor.cluster.objects import Node, Pod, Service, ServicePort
from netdoctor.observations import (
    Direction,
    DnsInfo,
    DnsOutcome,
    DnsResult,
    Encap,
    Interface,
    InterfaceKind,
    Inventory,
    NatEntry,
    Packet,
    Quoted,
    Refusal,
    RefusalKind,
    Route,
)
from netdoctor.policy import model as pm
from netdoctor.policy.engine import DirectionState, DirectionVerdict, FlowVerdict

# --- the lab ---------------------------------------------------------------------------------

SRC, SRC_VETH, SRC_MAC = "10.244.1.60", "ve5a3e5f82a", "aa:00:00:01:00:60"
WEB1, WEB1_VETH, WEB1_MAC = "10.244.2.20", "v90be70f2f7", "aa:00:00:02:00:20"
WEB2, WEB2_VETH, WEB2_MAC = "10.244.2.21", "v1b2c3d4e5f", "aa:00:00:02:00:21"
DNSPOD, DNS_VETH, DNS_MAC = "10.244.1.2", "vd0d0d0d0d0", "aa:00:00:01:00:02"
WEB3, WEB3_VETH, WEB3_MAC = "10.244.1.30", "v3c3c3c3c3c", "aa:00:00:01:00:30"
CLUSTER_IP, DNS_IP = "10.96.0.20", "10.96.0.10"
T0 = 1_700_000_000.0

PODS = {  # node -> {pod ip: (veth, mac)}
    "node-1": {SRC: (SRC_VETH, SRC_MAC), DNSPOD: (DNS_VETH, DNS_MAC), WEB3: (WEB3_VETH, WEB3_MAC)},
    "node-2": {WEB1: (WEB1_VETH, WEB1_MAC), WEB2: (WEB2_VETH, WEB2_MAC)},
}


def node_ip(node: str) -> str:
    return f"172.30.0.{node[-1]}"


def node_inventory(node: str, overlay: bool = True, pod_routes: bool = True) -> Inventory:
    """Like `ip link/addr/route/neigh` + `bridge fdb` on a lab node. `overlay=False`: host-gw
    (pod CIDRs routed via the other node's IP on eth0); `pod_routes=False`: no route to the other
    node's pod CIDR, only the default route."""
    n = int(node[-1])
    interfaces = [
        Interface(1, "lo", InterfaceKind.LOOPBACK, 65536, addresses=("127.0.0.1/8",)),
        Interface(2, "eth0", InterfaceKind.DEVICE, 1500, addresses=(f"172.30.0.{n}/24",)),
        Interface(3, "cni0", InterfaceKind.BRIDGE, 1450, addresses=(f"10.244.{n}.1/24",)),
    ]
    if overlay:
        interfaces.append(Interface(4, "flannel.1", InterfaceKind.OVERLAY, 1450, addresses=(f"10.244.{n}.0/32",),
                                    link="eth0", overlay_port=8472))
    pods = PODS.get(node, {})
    interfaces += [Interface(10 + i, veth, InterfaceKind.VETH, 1450, master="cni0")
                   for i, (veth, _) in enumerate(pods.values())]
    routes = [Route("default", "eth0", "172.30.0.254"), Route("172.30.0.0/24", "eth0"),
              Route(f"10.244.{n}.0/24", "cni0")]
    if pod_routes:
        for m in (1, 2):
            if m != n:
                routes.append(Route(f"10.244.{m}.0/24", "flannel.1", f"10.244.{m}.0") if overlay
                              else Route(f"10.244.{m}.0/24", "eth0", f"172.30.0.{m}"))
    return Inventory(
        tuple(interfaces), tuple(routes),
        neighbours=tuple((ip, mac, "cni0") for ip, (_, mac) in pods.items()),
        fdb=tuple((mac, veth) for veth, mac in pods.values()),
    )


def pod_inventory(ip: str) -> Inventory:
    return Inventory((Interface(1, "lo", InterfaceKind.LOOPBACK), Interface(2, "eth0", InterfaceKind.VETH,
                                                                         addresses=(f"{ip}/24",))),
                     (Route("default", "eth0", ip.rsplit(".", 1)[0] + ".1"),))


# --- routes: (capture point, interface, is the underlay between the nodes) -------------------


def cross(dst_veth: str = WEB1_VETH, overlay: bool = True, dst_node: str = "node-2") -> list[tuple[str, str, bool]]:
    """source eth0 → node-1 veth, cni0, flannel.1, eth0 → node-2 eth0, flannel.1, cni0, veth."""
    tunnel = [("node-1", "flannel.1", False)] if overlay else []
    back = [(dst_node, "flannel.1", False)] if overlay else []
    return [("source", "eth0", False), ("node-1", SRC_VETH, False), ("node-1", "cni0", False), *tunnel,
            ("node-1", "eth0", True), (dst_node, "eth0", True), *back, (dst_node, "cni0", False),
            (dst_node, dst_veth, False)]


def local(dst_veth: str) -> list[tuple[str, str, bool]]:
    return [("source", "eth0", False), ("node-1", SRC_VETH, False), ("node-1", "cni0", False),
            ("node-1", dst_veth, False)]


# --- the scene -------------------------------------------------------------------------------


class Scene:
    """The packets every capture point saw, and what to build the Evidence from."""

    def __init__(self, overlay: bool = True):
        self.overlay = overlay
        self.packets: dict[str, list[Packet]] = {"source": [], "node-1": [], "node-2": []}
        self.nat: dict[str, list[NatEntry]] = {"node-1": [], "node-2": []}
        self.inventories = {"node-1": node_inventory("node-1", overlay), "node-2": node_inventory("node-2", overlay)}

    def add(self, where: str, interface: str, t: float, **fields) -> None:
        fields.setdefault("length", 60)
        fields.setdefault("direction", Direction.IN)
        self.packets[where].append(Packet(index=len(self.packets[where]), time=t, ifindex=0,
                                          interface=interface, **fields))

    def flow(self, route, *, t: float, proto: str = "tcp", key: int, dst: str, dport: int | None = None,
             length: int = 60, df: bool = False, reach: int | None = None, dnat_from: int | None = None,
             backend: tuple[str, int | None] | None = None, reply: str | None = "answer",
             answered_at: int | None = None, back: int | None = None, dns_id: int | None = None,
             src: str = SRC) -> None:
        """One connection: the request seen at `route[:reach]`, with its destination rewritten to
        `backend` from `route[dnat_from]` on; the reply (answer/rst) from `route[answered_at]`
        (default: the last point the request reached) back to the source, seen at `back` points."""
        reach = len(route) if reach is None else reach
        real = backend or (dst, dport)
        for i, (where, interface, under) in enumerate(route[:reach]):
            to, port = real if dnat_from is not None and i >= dnat_from else (dst, dport)
            self.add(where, interface, t + i * 0.001, **self._fields(
                proto, src, to, key, port, length, df, request=True, dns_id=dns_id, under=under))
        if reply is None:
            return
        start = reach - 1 if answered_at is None else answered_at
        points = list(reversed(route[:start + 1]))
        for j, i in enumerate(range(start, -1, -1)[:len(points) if back is None else back]):
            where, interface, under = route[i]
            frm, port = real if dnat_from is not None and i >= dnat_from else (dst, dport)
            self.add(where, interface, t + 0.05 + j * 0.001, **self._fields(
                proto, frm, src, key, port, 60, False, request=False, dns_id=dns_id, under=under, rst=reply == "rst"))

    def _fields(self, proto, src, dst, key, port, length, df, *, request, dns_id, under, rst=False) -> dict:
        f = {"proto": proto, "src": src, "dst": dst, "length": length, "dont_fragment": df}
        if under and self.overlay:
            a, b = node_ip("node-1"), node_ip("node-2")
            f["encap"] = Encap("vxlan", a, b, 8472, 1) if request else Encap("vxlan", b, a, 8472, 1)
        if proto == "icmp":
            return f | {"icmp_type": 8 if request else 0, "icmp_code": 0, "icmp_id": key}
        ports = {"sport": key, "dport": port} if request else {"sport": port, "dport": key}
        if proto == "tcp":
            return f | ports | {"tcp_flags": "S" if request else ("RA" if rst else "SA")}
        return f | ports | {"dns": DnsInfo(dns_id, not request, "NOERROR", "web.demo.svc.cluster.local.",
                                            () if request else (CLUSTER_IP,))}

    def captures(self, nodes=("node-1", "node-2"), pod: bool = True) -> tuple[Capture, ...]:
        found = [Capture(n, n, None, tuple(sorted(self.packets[n], key=lambda p: p.time)), self.inventories[n],
                         tuple(self.nat[n])) for n in nodes]
        if pod:
            found.insert(0, Capture("probe source", "node-1", "source",
                                    tuple(sorted(self.packets["source"], key=lambda p: p.time)), pod_inventory(SRC)))
        return tuple(found)


# --- facts, plan, evidence -------------------------------------------------------------------


def pod(name, ip, node, ns="demo"):
    return Pod(ns, name, f"uid-{name}", (("app", "web"),), node, ip, node_ip(node), "Running", True)


SERVICE = Service("demo", "web", "ClusterIP", CLUSTER_IP, False, (ServicePort("http", "TCP", 80, 8080),),
                  (("app", "web"),))
DNS_SERVICE = Service("kube-system", "kube-dns", "ClusterIP", DNS_IP, False, (ServicePort("dns", "UDP", 53, 53),),
                      (("k8s-app", "kube-dns"),))
BACKENDS = (pod("web-1", WEB1, "node-2"), pod("web-2", WEB2, "node-2"))


def facts(**changes) -> Facts:
    base = Facts(
        namespace="demo", target=Ref(Kind.SERVICE, "web"), source="probe on node-1", source_node="node-1",
        source_pod=None, source_namespace="demo", port=80, target_port=8080, service=SERVICE,
        service_port=SERVICE.ports[0], backends=BACKENDS,
        nodes=(Node("node-1", node_ip("node-1"), True), Node("node-2", node_ip("node-2"), True)),
        dns_service=DNS_SERVICE, dns_backends=(pod("coredns-1", DNSPOD, "node-1", "kube-system"),), policy=(),
    )
    return replace(base, **changes)


def tcp_step(key, ip, port, attempts=1) -> Step:
    return Step(key, "ND-SVC-001" if ip == CLUSTER_IP else "ND-POD-001",
                Layer.SERVICE if ip == CLUSTER_IP else Layer.POD, "source", TcpConnect(ip, port, attempts),
                title=f"source → {ip}:{port}")


def ping_step(key, ip, size, df=False) -> Step:
    return Step(key, "ND-NODE-003", Layer.NODE, "source", Ping(ip, size, df), title=f"ping {ip} ({size})")


def dns_step(key) -> Step:
    return Step(key, "ND-DNS-002", Layer.DNS, "source", DnsQuery(None, "web.demo.svc.cluster.local"))


PROBES = {"source": RunningProbe("source", "nd-probe-source", SRC, "node-1")}


def evidence(scene: Scene | None, steps, observations=(), captured=("node-1", "node-2"), pod_capture=True,
             **fact_changes) -> Evidence:
    plan = Plan((PlannedProbe("source", "node-1", "demo", capture=True),), tuple(steps))
    captures = scene.captures(captured, pod_capture) if scene else ()
    return Evidence(facts(**fact_changes), plan, tuple(observations), captures, PROBES)


def only(ev: Evidence):
    found = paths(ev)
    assert len(found) == 1, found
    return found[0]


def labels(path) -> list[str]:
    return [h.label for h in path.hops]


CROSS_LABELS = ["source eth0", f"node-1 {SRC_VETH}", "node-1 cni0", "node-1 flannel.1", "node-1 eth0",
                "node-2 eth0", "node-2 flannel.1", "node-2 cni0", f"node-2 {WEB1_VETH}"]


# --- delivered ------------------------------------------------------------------------------


def test_healthy_cross_node_tcp_to_a_pod_ip_is_delivered_with_every_hop_seen_both_ways():
    s = Scene()
    s.flow(cross(), t=T0, key=40112, dst=WEB1, dport=8080)
    path = only(evidence(s, [tcp_step("pod:web-1", WEB1, 8080)]))
    assert path.outcome is PathOutcome.DELIVERED and path.cause == "delivered" and path.at is None
    assert labels(path) == CROSS_LABELS
    assert [h.kind for h in path.hops] == [HopKind.POD, HopKind.VETH, HopKind.BRIDGE, HopKind.OVERLAY,
                                           HopKind.UNDERLAY, HopKind.UNDERLAY, HopKind.OVERLAY, HopKind.BRIDGE,
                                           HopKind.VETH]
    assert all(h.request and h.reply is Reply.ANSWER for h in path.hops)
    assert path.flow == f"{SRC}:40112 → {WEB1}:8080 tcp"
    notes = {h.label: h.note for h in path.hops}
    assert notes["node-1 eth0"] == "VXLAN 172.30.0.1 → 172.30.0.2"
    assert notes["node-2 eth0"] == "VXLAN 172.30.0.1 → 172.30.0.2"
    assert all(not h.note for h in path.hops if h.kind is not HopKind.UNDERLAY)
    assert path.connections == 1 and path.backends == ()


def test_a_step_whose_connections_the_source_never_sent_is_not_seen():
    s = Scene()
    s.flow(cross(), t=T0, key=40112, dst=WEB1, dport=8080)
    path = only(evidence(s, [tcp_step("pod:web-2", WEB2, 8080)]))
    assert path.outcome is PathOutcome.UNKNOWN and path.cause == "not-seen" and path.hops == ()


def test_dns_query_is_recognised_by_its_message_id_and_followed_through_dnat_on_the_same_node():
    s = Scene()
    route = local(DNS_VETH)
    s.flow(route, t=T0, proto="udp", key=51000, dst=DNS_IP, dport=53, dnat_from=2, backend=(DNSPOD, 53), dns_id=4242)
    s.flow(route, t=T0 + 1, proto="udp", key=51001, dst=DNS_IP, dport=53, dnat_from=2, backend=(DNSPOD, 53),
           dns_id=999)  # someone else's query: not ours
    step = dns_step("dns:web")
    result = (DnsResult("web.demo.svc.cluster.local", "A", DNS_IP, DnsOutcome.ANSWER, 1, (CLUSTER_IP,),
                        query_id=4242),)
    path = only(evidence(s, [step], [Observation(step.key, result)]))
    assert path.outcome is PathOutcome.DELIVERED and path.connections == 1
    assert path.flow == f"{SRC}:51000 → {DNS_IP}:53 udp"
    assert labels(path) == ["source eth0", f"node-1 {SRC_VETH}", "node-1 cni0", f"node-1 {DNS_VETH}"]
    assert all(h.request and h.reply is Reply.ANSWER for h in path.hops)
    assert path.hops[2].note == f"DNAT → {DNSPOD}:53"


def test_service_ip_connections_are_followed_through_dnat_and_their_spread_counted():
    s = Scene()
    chosen = [WEB1, WEB2, WEB1]
    for n, backend in enumerate(chosen):
        veth = WEB1_VETH if backend == WEB1 else WEB2_VETH
        s.flow(cross(veth), t=T0 + n, key=41000 + n, dst=CLUSTER_IP, dport=80, dnat_from=2, backend=(backend, 8080))
    step = tcp_step("svc:web", CLUSTER_IP, 80, attempts=3)
    ev = evidence(s, [step])
    path = only(ev)
    assert path.outcome is PathOutcome.DELIVERED and path.cause == "delivered"
    assert path.connections == 3 and path.same_outcome == 3
    assert path.flow.endswith(f"→ {CLUSTER_IP}:80 tcp")
    assert all(h.request and h.reply is Reply.ANSWER for h in path.hops)
    assert path.hops[0].note == "" and path.hops[1].note == ""  # not translated yet
    assert path.hops[2].note.startswith("DNAT → 10.244.2.2") and path.hops[2].note.endswith(":8080")
    assert any("DNAT →" in h.note and "VXLAN" in h.note for h in path.hops if h.kind is HopKind.UNDERLAY)
    expected = ((f"{WEB1}:8080", 2), (f"{WEB2}:8080", 1))
    assert spread(ev, step) == expected and path.backends == expected


def test_dnat_known_only_from_conntrack_when_the_translated_packet_was_dropped():
    s = Scene()
    s.flow(cross(WEB2_VETH), t=T0, key=42000, dst=CLUSTER_IP, dport=80, reach=2, reply=None)  # eth0, veth
    s.nat["node-1"].append(NatEntry("tcp", SRC, 42000, CLUSTER_IP, 80, WEB2, 8080))
    step = tcp_step("svc:web", CLUSTER_IP, 80)
    ev = evidence(s, [step])
    path = only(ev)
    assert spread(ev, step) == ((f"{WEB2}:8080", 1),)
    assert path.backends == ((f"{WEB2}:8080", 1),)
    assert path.outcome is PathOutcome.DROPPED
    assert labels(path)[-1] == f"node-2 {WEB2_VETH}"  # followed to the backend conntrack chose
    assert dict(path.params)["dst"] == WEB2
    assert path.hops[path.at].label == "node-1 flannel.1" and path.hops[path.at].kind is HopKind.OVERLAY
    assert path.cause == "source-drop"
    assert [h.request for h in path.hops] == [True, True] + [False] * 7


# --- dropped --------------------------------------------------------------------------------


def test_dropped_between_nodes_with_vxlan_is_overlay_blocked_at_the_destination_underlay():
    s = Scene()
    s.flow(cross(), t=T0, key=40200, dst=WEB1, dport=8080, reach=5, reply=None)
    s.flow(cross(), t=T0 + 1, key=40201, dst=WEB1, dport=8080, reach=5, reply=None)
    path = only(evidence(s, [tcp_step("pod:web-1", WEB1, 8080, attempts=2)]))
    assert path.outcome is PathOutcome.DROPPED and path.cause == "overlay-blocked"
    hop = path.hops[path.at]
    assert hop.label == "node-2 eth0" and hop.kind is HopKind.UNDERLAY
    assert [h.request for h in path.hops] == [True] * 5 + [False] * 4
    assert all(h.reply is None for h in path.hops)
    params = dict(path.params)
    assert params["tunnel"] == "VXLAN 172.30.0.1 → 172.30.0.2" and params["from"] == "node-1"
    assert params["last"] == "node-1 eth0" and params["hop"] == "node-2 eth0"
    assert path.connections == 2 and path.same_outcome == 2


def test_dropped_between_nodes_without_encapsulation_is_a_fabric_drop():
    s = Scene(overlay=False)
    s.flow(cross(overlay=False), t=T0, key=40300, dst=WEB1, dport=8080, reach=4, reply=None)
    path = only(evidence(s, [tcp_step("pod:web-1", WEB1, 8080)]))
    assert labels(path) == ["source eth0", f"node-1 {SRC_VETH}", "node-1 cni0", "node-1 eth0", "node-2 eth0",
                            "node-2 cni0", f"node-2 {WEB1_VETH}"]
    assert path.outcome is PathOutcome.DROPPED and path.cause == "fabric-drop"
    assert path.hops[path.at].label == "node-2 eth0"
    assert all(not h.note for h in path.hops)


def test_a_reset_from_the_destination_pod_is_refused_by_pod_at_its_veth():
    s = Scene()
    s.flow(cross(), t=T0, key=40400, dst=WEB1, dport=8080, reply="rst")
    path = only(evidence(s, [tcp_step("pod:web-1", WEB1, 8080)]))
    assert path.outcome is PathOutcome.REFUSED and path.cause == "refused-by-pod"
    assert path.at == len(path.hops) - 1
    assert path.hops[path.at].label == f"node-2 {WEB1_VETH}" and path.hops[path.at].kind is HopKind.VETH
    assert all(h.request and h.reply is Reply.RST for h in path.hops)


def test_a_reset_from_a_node_reject_rule_is_refused_by_node():
    s = Scene()
    s.flow(cross(), t=T0, key=40401, dst=WEB1, dport=8080, reach=5, reply="rst")  # node-1 eth0 rejects
    path = only(evidence(s, [tcp_step("pod:web-1", WEB1, 8080)]))
    assert path.outcome is PathOutcome.REJECTED and path.cause == "refused-by-node"
    assert path.hops[path.at].label == "node-1 eth0"
    assert path.refusal == Refusal(RefusalKind.REJECT, WEB1, "node-1", "TCP reset")  # forged as the pod's


def test_icmp_port_unreachable_from_the_node_for_a_service_ip_is_no_endpoints():
    s = Scene()
    s.flow(local(DNS_VETH), t=T0, key=40500, dst=CLUSTER_IP, dport=80, reach=2, reply=None)
    error = {"proto": "icmp", "src": CLUSTER_IP, "dst": SRC, "length": 88, "icmp_type": 3, "icmp_code": 3,
                 "quoted": Quoted("tcp", SRC, CLUSTER_IP, 40500, 80)}
    s.add("node-1", SRC_VETH, T0 + 0.01, **error)
    s.add("source", "eth0", T0 + 0.011, **error)
    path = only(evidence(s, [tcp_step("svc:web", CLUSTER_IP, 80)], backends=()))
    assert path.outcome is PathOutcome.REJECTED and path.cause == "no-endpoints"
    assert path.hops[path.at].label == f"node-1 {SRC_VETH}"
    assert path.hops[0].reply is Reply.ICMP and path.hops[1].reply is Reply.ICMP
    params = dict(path.params)
    assert params["sender"] == CLUSTER_IP and params["icmp"] == "ICMP port unreachable"
    assert path.refusal.kind is RefusalKind.NO_ENDPOINTS and path.refusal.node == "node-1"


def test_icmp_port_unreachable_from_a_pod_is_only_icmp_unreachable():
    s = Scene()
    s.flow(cross(), t=T0, proto="udp", key=40501, dst=WEB1, dport=9999, reply=None, dns_id=1)
    error = {"proto": "icmp", "src": WEB1, "dst": SRC, "length": 88, "icmp_type": 3, "icmp_code": 3,
                 "quoted": Quoted("udp", SRC, WEB1, 40501, 9999)}
    for i, (where, interface, _) in enumerate(reversed(cross())):
        s.add(where, interface, T0 + 0.05 + i * 0.001, **error)
    step = Step("dns:pod", "ND-DNS-003", Layer.DNS, "source", DnsQuery(WEB1, "web"))
    result = (DnsResult("web", "A", WEB1, DnsOutcome.ERROR, 1, query_id=1),)
    path = only(evidence(s, [step], [Observation(step.key, result)]))
    assert path.outcome is PathOutcome.ICMP_ERROR and path.cause == "icmp-unreachable"
    assert path.hops[path.at].label == f"node-2 {WEB1_VETH}"


def test_an_answer_lost_on_the_way_back_is_reply_lost_at_the_hop_that_missed_it():
    s = Scene()
    s.flow(cross(), t=T0, key=40600, dst=WEB1, dport=8080, back=4)  # node-2's four hops saw the SYN-ACK
    path = only(evidence(s, [tcp_step("pod:web-1", WEB1, 8080)]))
    assert path.outcome is PathOutcome.REPLY_LOST and path.cause == "reply-lost"
    assert path.hops[path.at].label == "node-1 eth0"
    assert all(h.request for h in path.hops)
    assert [h.reply for h in path.hops] == [None] * 5 + [Reply.ANSWER] * 4


def test_an_answer_lost_on_a_node_without_a_route_back_is_reply_no_route():
    s = Scene()
    s.inventories["node-2"] = node_inventory("node-2", pod_routes=False)  # only default + its own CIDR
    route = cross()
    s.flow(route, t=T0, key=40700, dst=WEB1, dport=8080, back=2)  # answered, seen at veth and cni0 only
    path = only(evidence(s, [tcp_step("pod:web-1", WEB1, 8080)]))
    assert path.outcome is PathOutcome.REPLY_LOST and path.cause == "reply-no-route"
    params = dict(path.params)
    assert params["node"] == "node-2" and params["dst"] == SRC
    # The SYN came in through the tunnel though node-2's route back does not go out through it:
    # flannel.1 is drawn where it saw the request, and is the first hop the answer missed.
    assert labels(path) == CROSS_LABELS and all(h.request for h in path.hops)
    assert path.hops[path.at].label == "node-2 flannel.1"
    assert path.hops[path.at + 1].reply is Reply.ANSWER
    assert path.refusal == Refusal(RefusalKind.SILENT, node="node-2")


def test_an_unread_route_table_is_no_missing_route():
    s = Scene()
    s.inventories["node-2"] = replace(node_inventory("node-2", pod_routes=False), routes=(), unread=("route",))
    s.flow(cross(), t=T0, key=40710, dst=WEB1, dport=8080, back=2)
    path = only(evidence(s, [tcp_step("pod:web-1", WEB1, 8080)]))
    assert path.outcome is PathOutcome.REPLY_LOST and path.cause == "reply-lost"  # not "reply-no-route"


def test_a_big_df_ping_lost_at_the_source_underlay_while_a_small_one_passes_is_mtu():
    s = Scene()
    s.flow(cross(), t=T0, proto="icmp", key=7, dst=WEB1, length=84)
    s.flow(cross(), t=T0 + 1, proto="icmp", key=8, dst=WEB1, length=1428, df=True, reach=4, reply=None)
    small, big = ping_step("ping:small", WEB1, 56), ping_step("ping:big", WEB1, 1400, df=True)
    found = {p.step_key: p for p in paths(evidence(s, [small, big]))}
    assert found["ping:small"].outcome is PathOutcome.DELIVERED
    assert found["ping:small"].flow == f"{SRC}:7 → {WEB1} icmp"
    path = found["ping:big"]
    assert path.outcome is PathOutcome.DROPPED and path.cause == "mtu"
    assert path.hops[path.at].label == "node-1 eth0" and path.hops[path.at].kind is HopKind.UNDERLAY
    assert dict(path.params)["size"] == "1428"
    assert dict(path.params)["what"] == f"ping of 1428 bytes to {WEB1} (DF)"


def test_a_big_ping_alone_lost_is_not_called_mtu():
    s = Scene()
    s.flow(cross(), t=T0, proto="icmp", key=8, dst=WEB1, length=1428, df=True, reach=4, reply=None)
    path = only(evidence(s, [ping_step("ping:big", WEB1, 1400, df=True)]))
    assert path.outcome is PathOutcome.DROPPED and path.cause != "mtu"


def test_a_cluster_ip_leaving_its_node_untranslated_per_conntrack_is_untranslated():
    s = Scene()
    route = [("source", "eth0", False), ("node-1", SRC_VETH, False), ("node-1", "cni0", False),
             ("node-1", "eth0", False)]
    s.flow(route, t=T0, key=40800, dst=CLUSTER_IP, dport=80, reply=None)
    s.nat["node-1"].append(NatEntry("tcp", SRC, 40800, CLUSTER_IP, 80, CLUSTER_IP, 80))
    step = tcp_step("svc:web", CLUSTER_IP, 80)
    ev = evidence(s, [step])
    path = only(ev)
    assert labels(path) == ["source eth0", f"node-1 {SRC_VETH}", "node-1 cni0", "node-1 eth0"]
    assert path.outcome is PathOutcome.DROPPED and path.cause == "untranslated"
    assert dict(path.params)["node"] == "node-1"
    assert all(h.request for h in path.hops) and spread(ev, step) == ()


def test_a_cluster_ip_leaving_its_node_untranslated_to_its_only_backend_is_untranslated():
    s = Scene()
    s.flow(cross()[:5], t=T0, key=40802, dst=CLUSTER_IP, dport=80, reply=None)  # up to node-1 eth0, as it was
    path = only(evidence(s, [tcp_step("svc:web", CLUSTER_IP, 80)], backends=BACKENDS[:1]))
    assert path.cause == "untranslated" and dict(path.params)["node"] == "node-1"
    assert all("DNAT" not in h.note for h in path.hops)


def test_a_cluster_ip_leaving_its_node_untranslated_without_conntrack_is_untranslated():
    s = Scene()
    route = [("source", "eth0", False), ("node-1", SRC_VETH, False), ("node-1", "cni0", False),
             ("node-1", "eth0", False)]
    s.flow(route, t=T0, key=40801, dst=CLUSTER_IP, dport=80, reply=None)
    path = only(evidence(s, [tcp_step("svc:web", CLUSTER_IP, 80)]))  # two backends, no NatEntry
    assert path.cause == "untranslated"  # actual: "no-answer", "delivered to the pod (node-1 cni0)"


def test_a_notready_destination_node_without_capture_is_node_not_ready():
    s = Scene()
    s.flow(cross(), t=T0, key=40900, dst=WEB1, dport=8080, reach=5, reply=None)
    nodes = (Node("node-1", node_ip("node-1"), True), Node("node-2", node_ip("node-2"), False))
    path = only(evidence(s, [tcp_step("pod:web-1", WEB1, 8080)], captured=("node-1",), nodes=nodes))
    assert path.outcome is PathOutcome.DROPPED and path.cause == "node-not-ready"
    hop = path.hops[path.at]
    assert path.at == len(path.hops) - 1
    assert hop.node == "node-2" and "NotReady" in hop.blind
    assert labels(path)[:5] == CROSS_LABELS[:5]


def test_a_missing_capture_on_a_ready_node_is_blind_not_not_ready():
    s = Scene()
    s.flow(cross(), t=T0, key=40901, dst=WEB1, dport=8080, reach=5, reply=None)
    path = only(evidence(s, [tcp_step("pod:web-1", WEB1, 8080)], captured=("node-1",)))
    assert path.cause == "blind" and path.hops[path.at].blind == "no capture on node-2"


def reused_port_scene() -> Scene:
    """Both steps open source port 40000 at once: the direct connection to web-1 (reset by the
    pod) and the Service one, translated to web-2 and answered. No conntrack entry."""
    s = Scene()
    s.flow(cross(WEB1_VETH), t=T0, key=40000, dst=WEB1, dport=8080, reply="rst")
    s.flow(cross(WEB2_VETH), t=T0 + 0.0005, key=40000, dst=CLUSTER_IP, dport=80, dnat_from=2, backend=(WEB2, 8080))
    return s


SVC_STEP, DIRECT_STEP = tcp_step("svc:web", CLUSTER_IP, 80), tcp_step("pod:web-1", WEB1, 8080)


def test_a_reused_source_port_leaves_the_direct_pod_connection_alone():
    found = {p.step_key: p for p in paths(evidence(reused_port_scene(), [SVC_STEP, DIRECT_STEP]))}
    direct = found["pod:web-1"]
    assert direct.outcome is PathOutcome.REFUSED and direct.cause == "refused-by-pod"
    assert direct.connections == 1 and direct.backends == ()
    assert labels(direct) == CROSS_LABELS
    assert all(h.reply is Reply.RST for h in direct.hops)  # never the Service's SYN-ACK
    assert all("DNAT" not in h.note for h in direct.hops)
    assert found["svc:web"].connections == 1  # recognised at the source: the direct SYN is not the Service's


def test_a_reused_source_port_does_not_lend_the_pod_connection_as_the_service_translation():
    ev = evidence(reused_port_scene(), [SVC_STEP, DIRECT_STEP])
    assert spread(ev, SVC_STEP) == ((f"{WEB2}:8080", 1),)
    svc = next(p for p in paths(ev) if p.step_key == "svc:web")
    assert labels(svc)[-1] == f"node-2 {WEB2_VETH}"
    assert svc.hops[0].note == ""  # nothing is translated inside the source pod
    assert all(h.reply is not Reply.RST for h in svc.hops)  # the direct connection's reset is not its own


def test_a_reused_source_port_with_conntrack_keeps_the_service_translation():
    s = Scene()
    s.flow(cross(WEB1_VETH), t=T0, key=40000, dst=WEB1, dport=8080, reply="rst")
    s.flow(cross(WEB2_VETH), t=T0 + 0.0005, key=40000, dst=CLUSTER_IP, dport=80, dnat_from=2, backend=(WEB2, 8080))
    s.nat["node-1"].append(NatEntry("tcp", SRC, 40000, CLUSTER_IP, 80, WEB2, 8080))
    svc = tcp_step("svc:web", CLUSTER_IP, 80)
    ev = evidence(s, [svc, tcp_step("pod:web-1", WEB1, 8080)])
    found = {p.step_key: p for p in paths(ev)}
    assert spread(ev, svc) == ((f"{WEB2}:8080", 1),)
    assert found["svc:web"].outcome is PathOutcome.DELIVERED
    assert found["pod:web-1"].cause == "refused-by-pod"


def test_no_captures_means_no_paths():
    s = Scene()
    s.flow(cross(), t=T0, key=40112, dst=WEB1, dport=8080)
    assert paths(evidence(None, [tcp_step("pod:web-1", WEB1, 8080)])) == ()


def test_without_a_pod_capture_connections_are_recognised_at_the_source_veth():
    s = Scene()
    s.flow(cross(), t=T0, key=40113, dst=WEB1, dport=8080)
    path = only(evidence(s, [tcp_step("pod:web-1", WEB1, 8080)], pod_capture=False))
    assert path.outcome is PathOutcome.DELIVERED and labels(path) == CROSS_LABELS[1:]


# --- policy ---------------------------------------------------------------------------------


def verdict(egress: bool, ingress: bool) -> FlowVerdict:
    src = pm.Pod("demo", "source", {}, (IPv4Address(SRC),))
    dst = pm.Pod("demo", "web-1", {"app": "web"}, (IPv4Address(WEB1),))
    state = {True: DirectionState.NOT_ISOLATED, False: DirectionState.DENIED}
    return FlowVerdict(src, dst, pm.Protocol.TCP, 8080,
                       DirectionVerdict(pm.Direction.EGRESS, state[egress], src.key),
                       DirectionVerdict(pm.Direction.INGRESS, state[ingress], dst.key))


@pytest.mark.parametrize("egress, ingress, cause", [(True, False, "policy-ingress"), (False, True, "policy-egress")])
def test_a_drop_at_the_destination_denied_by_policy_names_the_direction(egress, ingress, cause):
    s = Scene()
    s.flow(cross(), t=T0, key=41100, dst=WEB1, dport=8080, reach=7, reply=None)  # up to node-2 flannel.1
    policy = (PolicyFlow("web-1", verdict(egress, ingress)), PolicyFlow("web-2", verdict(True, True)))
    path = only(evidence(s, [tcp_step("pod:web-1", WEB1, 8080)], policy=policy))
    assert path.outcome is PathOutcome.DROPPED and path.cause == cause
    assert path.hops[path.at].label == f"node-2 {WEB1_VETH}"  # the bridge is looked past


def test_the_same_drop_with_policy_allowing_is_a_destination_drop():
    s = Scene()
    s.flow(cross(), t=T0, key=41101, dst=WEB1, dport=8080, reach=7, reply=None)
    policy = (PolicyFlow("web-1", verdict(True, True)),)
    path = only(evidence(s, [tcp_step("pod:web-1", WEB1, 8080)], policy=policy))
    assert path.cause == "destination-drop" and path.hops[path.at].label == f"node-2 {WEB1_VETH}"


# --- refusals told apart: the pod's reset, a node's reject, silence -------------------------
# kube-router answers a denied SYN with `REJECT --reject-with icmp-port-unreachable`, sent by the
# node from its address on the pod's side: cni0 on the same node, flannel.1 across the tunnel.
# For a ClusterIP, conntrack rewrites that error's sender into the ClusterIP on the client's node.

CNI0 = {"node-1": "10.244.1.1", "node-2": "10.244.2.1"}
FLANNEL = {"node-1": "10.244.1.0", "node-2": "10.244.2.0"}
WEB3_POD = pod("web-3", WEB3, "node-1")
DENY_WEB = (PolicyFlow("web-1", verdict(True, False)), PolicyFlow("web-2", verdict(True, False)),
            PolicyFlow("web-3", verdict(True, False)))


def unreachable(s: Scene, points, t: float, sender: str, quoted: Quoted, code: int = 3) -> None:
    """An ICMP destination unreachable from `sender` to the source, seen at `points` in turn."""
    for i, (where, interface, under) in enumerate(points):
        fields = {"proto": "icmp", "src": sender, "dst": SRC, "length": 88, "icmp_type": 3, "icmp_code": code,
                  "quoted": quoted}
        if under:
            fields["encap"] = Encap("vxlan", node_ip("node-2"), node_ip("node-1"), 8472, 1)
        s.add(where, interface, t + 0.01 + i * 0.001, **fields)


@pytest.mark.parametrize("policy, cause", [(DENY_WEB, "policy-reject"), ((), "firewall-reject")])
def test_a_same_node_reject_from_the_nodes_cni0_address_is_a_reject_at_that_node(policy, cause):
    s = Scene()
    s.flow(local(WEB3_VETH), t=T0, key=43000, dst=WEB3, dport=8080, reach=2, reply=None)  # source eth0, veth
    unreachable(s, [("node-1", "cni0", False), ("node-1", SRC_VETH, False), ("source", "eth0", False)], T0,
                CNI0["node-1"], Quoted("tcp", SRC, WEB3, 43000, 8080))
    step = tcp_step("pod:web-3", WEB3, 8080)
    ev = evidence(s, [step], backends=BACKENDS + (WEB3_POD,), policy=policy)
    path = only(ev)
    assert path.outcome is PathOutcome.REJECTED and path.cause == cause
    assert labels(path) == ["source eth0", f"node-1 {SRC_VETH}", "node-1 cni0", f"node-1 {WEB3_VETH}"]
    assert [h.reply for h in path.hops] == [Reply.ICMP, Reply.ICMP, Reply.ICMP, None]
    assert path.hops[path.at].label == "node-1 cni0"
    assert path.refusal == Refusal(RefusalKind.REJECT, CNI0["node-1"], "node-1", "ICMP port unreachable")
    params = dict(path.params)
    assert params["node"] == "node-1" and params["sender"] == CNI0["node-1"]
    assert refusal(ev, step) == path.refusal


def cross_reject(s: Scene, key: int, dst: str, dport: int, *, dnat: bool = False, rewritten_below: int = 0) -> None:
    """A SYN (to `dst`, or DNATed on node-1 cni0 to web-1) that crosses the tunnel and is rejected
    by node-2 after its flannel.1; the error comes back from node-2's flannel.1 address, seen
    rewritten into `dst` (by conntrack) at the route points before `rewritten_below`."""
    route = cross()
    s.flow(route, t=T0, key=key, dst=dst, dport=dport, reach=7, reply=None,
           **({"dnat_from": 2, "backend": (WEB1, 8080)} if dnat else {}))
    back = list(reversed(route[:7]))  # node-2 flannel.1 … source eth0
    cut = 7 - rewritten_below
    unreachable(s, back[:cut], T0, FLANNEL["node-2"], Quoted("tcp", SRC, WEB1, key, 8080))
    unreachable(s, back[cut:], T0 + 0.005, dst, Quoted("tcp", SRC, dst, key, dport))


def test_a_cross_node_reject_from_the_remote_flannel_address_is_a_reject_at_the_remote_node():
    s = Scene()
    cross_reject(s, 43100, WEB1, 8080)
    path = only(evidence(s, [tcp_step("pod:web-1", WEB1, 8080)], policy=DENY_WEB))
    assert path.outcome is PathOutcome.REJECTED and path.cause == "policy-reject"
    assert [h.request for h in path.hops] == [True] * 7 + [False] * 2
    assert [h.reply for h in path.hops] == [Reply.ICMP] * 7 + [None] * 2
    assert path.hops[path.at].label == "node-2 flannel.1"
    assert path.refusal == Refusal(RefusalKind.REJECT, FLANNEL["node-2"], "node-2", "ICMP port unreachable")
    assert dict(path.params)["node"] == "node-2"


@pytest.mark.parametrize("captured", [("node-1", "node-2"), ("node-1",)])
def test_a_reject_rewritten_into_the_cluster_ip_is_the_backends_node_not_no_endpoints(captured):
    """The client sees the ICMP from the ClusterIP, but the same hops show the DNAT to a ready pod
    and the SYN crossing the tunnel: node-2's policy rejected it; the Service had its endpoint."""
    s = Scene()
    cross_reject(s, 43200, CLUSTER_IP, 80, dnat=True, rewritten_below=3)  # rewritten leaving node-1 cni0
    path = only(evidence(s, [tcp_step("svc:web", CLUSTER_IP, 80)], captured=captured, policy=DENY_WEB))
    assert path.outcome is PathOutcome.REJECTED and path.cause == "policy-reject", path.cause
    assert path.hops[2].note == f"DNAT → {WEB1}:8080"
    assert any("VXLAN" in h.note for h in path.hops if h.request)
    assert path.refusal.kind is RefusalKind.REJECT and path.refusal.node == "node-2"
    assert path.refusal.sender == FLANNEL["node-2"] and path.refusal.seen_as == CLUSTER_IP
    params = dict(path.params)
    assert params["node"] == "node-2" and CLUSTER_IP in params["sender"] and FLANNEL["node-2"] in params["sender"]


def test_a_reject_seen_only_as_the_cluster_ip_after_dnat_is_still_not_no_endpoints():
    s = Scene()
    cross_reject(s, 43300, CLUSTER_IP, 80, dnat=True, rewritten_below=3)
    for where in ("node-1", "node-2"):  # no capture saw the real sender
        s.packets[where] = [p for p in s.packets[where] if p.proto != "icmp" or p.src == CLUSTER_IP]
    path = only(evidence(s, [tcp_step("svc:web", CLUSTER_IP, 80)]))
    assert path.outcome is PathOutcome.REJECTED and path.cause == "firewall-reject"
    assert path.refusal == Refusal(RefusalKind.REJECT, None, "node-2", "ICMP port unreachable", CLUSTER_IP)
    assert "conntrack rewrote" in dict(path.params)["sender"]
    # the hop is the rejecting node's, though the error was matched only on node-1 after the un-NAT
    assert path.hops[path.at].label == "node-2 flannel.1"


@pytest.mark.parametrize("sender", [CLUSTER_IP, CNI0["node-1"]])
def test_a_reject_for_the_cluster_ip_with_no_translation_anywhere_is_no_endpoints(sender):
    """kube-proxy's reject for a Service without endpoints, from the ClusterIP (nftables, before
    NAT) or from the node's cni0 address (iptables, in FORWARD): no DNAT, no translated SYN."""
    s = Scene()
    s.flow(local(DNS_VETH), t=T0, key=43400, dst=CLUSTER_IP, dport=80, reach=3, reply=None)
    unreachable(s, [("node-1", "cni0", False), ("node-1", SRC_VETH, False), ("source", "eth0", False)], T0,
                sender, Quoted("tcp", SRC, CLUSTER_IP, 43400, 80))
    path = only(evidence(s, [tcp_step("svc:web", CLUSTER_IP, 80)]))  # two backends, both Ready
    assert path.outcome is PathOutcome.REJECTED and path.cause == "no-endpoints"
    assert path.refusal.kind is RefusalKind.NO_ENDPOINTS and path.refusal.node == "node-1"


def test_the_same_reject_with_conntrack_showing_the_dnat_is_a_reject_after_translation():
    s = Scene()
    s.flow(local(DNS_VETH), t=T0, key=43401, dst=CLUSTER_IP, dport=80, reach=3, reply=None)
    unreachable(s, [("node-1", "cni0", False), ("node-1", SRC_VETH, False), ("source", "eth0", False)], T0,
                CLUSTER_IP, Quoted("tcp", SRC, CLUSTER_IP, 43401, 80))
    s.nat["node-1"].append(NatEntry("tcp", SRC, 43401, CLUSTER_IP, 80, WEB1, 8080))
    path = only(evidence(s, [tcp_step("svc:web", CLUSTER_IP, 80)]))
    assert path.outcome is PathOutcome.REJECTED and path.cause == "firewall-reject"
    assert path.refusal.kind is RefusalKind.REJECT and path.refusal.node == "node-1"  # dropped before leaving


def test_the_slices_without_a_ready_endpoint_make_a_remote_reject_no_endpoints():
    from netdoctor.cluster.objects import EndpointAddress, EndpointSlice

    s = Scene()
    s.flow(cross()[:5], t=T0, key=43402, dst=CLUSTER_IP, dport=80, reply=None)
    unreachable(s, [("node-1", "eth0", False), ("node-1", "cni0", False), ("node-1", SRC_VETH, False),
                    ("source", "eth0", False)], T0, "172.30.0.254", Quoted("tcp", SRC, CLUSTER_IP, 43402, 80))
    unready = (EndpointSlice("demo", "web-x", "web", "IPv4", (), (EndpointAddress(WEB1, False, False, True, "web-1",
                                                                                 "node-2"),)),)
    path = only(evidence(s, [tcp_step("svc:web", CLUSTER_IP, 80)], slices=unready))
    assert path.cause == "no-endpoints" and path.refusal.kind is RefusalKind.NO_ENDPOINTS
    path = only(evidence(s, [tcp_step("svc:web", CLUSTER_IP, 80)]))  # slices unknown: a router's reject
    assert path.cause == "firewall-reject" and path.refusal.sender == "172.30.0.254"


@pytest.mark.parametrize("dst, dport, dnat", [(WEB1, 8080, False), (CLUSTER_IP, 80, True)])
def test_a_reset_from_the_pods_own_address_is_the_pod_refusing(dst, dport, dnat):
    s = Scene()
    s.flow(cross(), t=T0, key=43500, dst=dst, dport=dport, reply="rst",
           **({"dnat_from": 2, "backend": (WEB1, 8080)} if dnat else {}))
    step = tcp_step("svc:web" if dnat else "pod:web-1", dst, dport)
    ev = evidence(s, [step])
    path = only(ev)
    assert path.outcome is PathOutcome.REFUSED and path.cause == "refused-by-pod"
    assert path.refusal == Refusal(RefusalKind.POD, WEB1, "node-2", "TCP reset") and path.refusal.reached
    assert refusal(ev, step).reached


def test_a_reset_from_beyond_a_blind_node_is_an_unknown_refusal():
    s = Scene()
    s.flow(cross(), t=T0, key=43600, dst=WEB1, dport=8080, reply="rst")  # node-2 is not captured
    path = only(evidence(s, [tcp_step("pod:web-1", WEB1, 8080)], captured=("node-1",)))
    assert path.outcome is PathOutcome.REFUSED and path.cause == "refused-unseen"
    assert path.refusal.kind is RefusalKind.UNKNOWN and not path.refusal.reached
    assert dict(path.params)["why"] == "no capture on node-2"


def test_without_capture_the_refusal_kind_is_unknown():
    step = tcp_step("pod:web-1", WEB1, 8080)
    assert refusal(evidence(None, [step]), step) == Refusal(RefusalKind.UNKNOWN)
    s = Scene()
    s.flow(cross(), t=T0, key=43700, dst=WEB1, dport=8080, reply="rst")
    blind_source = replace(evidence(s, [step], pod_capture=False, captured=()), captures=(
        Capture("probe source", "node-1", "source", blind="NET_RAW forbidden by PodSecurity"),))
    assert refusal(blind_source, step).kind is RefusalKind.UNKNOWN


def test_a_drop_is_silence_at_the_hop_of_loss():
    s = Scene()
    s.flow(cross(), t=T0, key=43800, dst=WEB1, dport=8080, reach=5, reply=None)
    path = only(evidence(s, [tcp_step("pod:web-1", WEB1, 8080)]))
    assert path.refusal == Refusal(RefusalKind.SILENT, node="node-2")


def test_a_steps_refusal_names_a_nodes_reject_before_the_pods_reset():
    s = Scene()
    s.flow(cross(WEB2_VETH), t=T0, key=43900, dst=CLUSTER_IP, dport=80, reply="rst", dnat_from=2,
           backend=(WEB2, 8080))
    cross_reject(s, 43901, CLUSTER_IP, 80, dnat=True, rewritten_below=3)
    step = tcp_step("svc:web", CLUSTER_IP, 80, attempts=2)
    found = refusal(evidence(s, [step], policy=DENY_WEB), step)
    assert found.kind is RefusalKind.REJECT and found.node == "node-2" and not found.reached


# --- a hop where the packet was seen is drawn as seen ----------------------------------------


def test_a_pod_the_nodes_neighbour_table_does_not_know_is_still_drawn_where_it_was_seen():
    """node-2 never ARPed web-1 (or the entry expired): its inventory cannot place the pod, yet
    tcpdump saw the SYN on cni0 and the pod's veth: both are hops, seen both ways."""
    s = Scene()
    s.inventories["node-2"] = replace(s.inventories["node-2"], neighbours=(), fdb=())
    s.flow(cross(), t=T0, key=44000, dst=WEB1, dport=8080)
    for backends in (BACKENDS, BACKENDS[1:]):  # also when the API does not list web-1
        path = only(evidence(s, [tcp_step("pod:web-1", WEB1, 8080)], backends=backends))
        assert labels(path) == CROSS_LABELS
        assert all(h.request and h.reply is Reply.ANSWER and not h.blind for h in path.hops)


def test_an_interface_off_the_predicted_route_is_drawn_where_the_packet_crossed_it():
    """node-1's route to node-2's pods goes through flannel.1, but the SYN left through another
    tunnel device: it is drawn right after cni0, where the request crossed it."""
    s = Scene()
    inv = s.inventories["node-1"]
    s.inventories["node-1"] = replace(inv, interfaces=inv.interfaces + (
        Interface(30, "wg0", InterfaceKind.OVERLAY, 1420, addresses=("10.99.0.1/32",)),))
    route = cross()
    route[3] = ("node-1", "wg0", False)
    s.flow(route, t=T0, key=44100, dst=WEB1, dport=8080)
    path = only(evidence(s, [tcp_step("pod:web-1", WEB1, 8080)]))
    assert labels(path) == CROSS_LABELS[:3] + ["node-1 wg0", "node-1 flannel.1"] + CROSS_LABELS[4:]
    assert not path.hops[4].request  # the predicted tunnel saw nothing
    wg0 = path.hops[3]
    assert wg0.kind is HopKind.OVERLAY and wg0.request and wg0.reply is Reply.ANSWER
    assert path.outcome is PathOutcome.DELIVERED


def test_a_steps_path_is_its_answered_reject_when_the_rate_limit_silenced_the_others():
    """A node sends a few ICMP errors to a destination, then one a second: of a step's rejected
    connections the first one here got none. The step's path is the rejected one, every run."""
    s = Scene()
    for n, answered in enumerate((False, True, False)):
        s.flow(local(DNS_VETH), t=T0 + n, key=45000 + n, dst=CLUSTER_IP, dport=80, reach=2, reply=None)
        if answered:
            unreachable(s, [("node-1", "cni0", False), ("node-1", SRC_VETH, False), ("source", "eth0", False)],
                        T0 + n, CNI0["node-1"], Quoted("tcp", SRC, CLUSTER_IP, 45000 + n, 80))
    path = only(evidence(s, [tcp_step("svc:web", CLUSTER_IP, 80, attempts=3)], backends=()))
    assert path.outcome is PathOutcome.REJECTED and path.cause == "no-endpoints"
    # the silent twins are the same cause: the Service has no endpoint, their errors were rate-limited
    assert path.flow.startswith(f"{SRC}:45001 ") and (path.connections, path.same_outcome) == (3, 3)


def test_an_egress_reject_right_after_the_dnat_on_the_source_node_is_the_policys_not_no_endpoints():
    """The source's node DNATs the SYN, its egress policy rejects it in FORWARD: no translated
    packet on any interface, the error rewritten into the ClusterIP, no conntrack entry (a rejected
    connection is never confirmed). The policies deny every backend: their reject, at node-1."""
    s = Scene()
    s.flow(local(DNS_VETH), t=T0, key=45100, dst=CLUSTER_IP, dport=80, reach=3, reply=None)
    unreachable(s, [("node-1", "cni0", False), ("node-1", SRC_VETH, False), ("source", "eth0", False)], T0,
                CLUSTER_IP, Quoted("tcp", SRC, CLUSTER_IP, 45100, 80))
    egress_denied = (PolicyFlow("web-1", verdict(False, True)), PolicyFlow("web-2", verdict(False, True)))
    path = only(evidence(s, [tcp_step("svc:web", CLUSTER_IP, 80)], policy=egress_denied))
    assert path.outcome is PathOutcome.REJECTED and path.cause == "policy-reject"
    assert path.refusal.kind is RefusalKind.REJECT and path.refusal.node == "node-1"


def test_a_capture_finds_a_connections_packets_by_its_source_endpoint():
    def packet(i, **fields):
        return Packet(index=i, time=T0 + i / 1000, ifindex=2, interface="eth0", direction=Direction.OUT, **fields)

    syn = packet(0, proto="tcp", src="10.244.1.5", dst="10.96.0.20", length=60, sport=40000, dport=80, tcp_flags="S")
    synack = packet(1, proto="tcp", src="10.244.2.3", dst="10.244.1.5", length=60, sport=8080, dport=40000, tcp_flags="SA")
    refused = packet(2, proto="icmp", src="10.244.2.1", dst="10.244.1.5", length=88, icmp_type=3, icmp_code=3,
                     quoted=Quoted("tcp", "10.244.1.5", "10.244.2.3", 40000, 8080))
    echo = packet(3, proto="icmp", src="10.244.1.5", dst="10.244.2.9", length=84, icmp_type=8, icmp_id=77)
    other = packet(4, proto="tcp", src="10.244.1.5", dst="10.96.0.20", length=60, sport=40001, dport=80, tcp_flags="S")
    found = Capture("node-1", "node-1", packets=(syn, synack, refused, echo, other)).by_endpoint
    assert found[("10.244.1.5", 40000)] == (syn, synack, refused)  # request, answer, an error quoting it
    assert found[("10.244.1.5", 77)] == (echo,)
    assert found[("10.244.1.5", 40001)] == (other,)
