"""netdoctor.judge.hops in the CNI dialects other than flannel, on crafted captures and inventories:
Cilium (lxc… veths without a bridge, `cilium_host` holding the router IP and named by the routes to
the other nodes' pods while the BPF programs send them into `cilium_vxlan`; Services translated at
the socket, so the pod's own packets carry the backend's address), Calico (cali… veths with /32
routes, `vxlan.calico`), and what the lab's kernel cannot build: kube-proxy's IPVS mode (the Service
IPs bound on `kube-ipvs0`), Calico's IP-in-IP (`tunl0`) and Geneve (Cilium's `cilium_geneve`, UDP
6081). The lab covers the others end to end (tests/lab/test_dialect_matrix.py)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from netdoctor.cluster.objects import Node, Pod, Service, ServicePort
from netdoctor.judge.hops import paths, spread
from netdoctor.model import (
    Capture, ClusterKind, Cni, CniKind, Confidence, Evidence, Facts, HopKind, Kind, Layer, Observation, Overlay,
    PathOutcome, Plan, PlannedProbe, ProxyKind, ProxyMode, Ref, Reply, RunningProbe, ServiceProxy, Step, TcpConnect,
)
from netdoctor.observations import (
    Direction, Encap, Interface, InterfaceKind, Inventory, NatEntry, Packet, Route, TcpOutcome, TcpResult,
)

SRC, WEB1, WEB2 = "10.244.1.60", "10.244.2.20", "10.244.2.21"
CLUSTER_IP = "10.96.0.20"
T0 = 1_700_000_000.0
LXC = {SRC: "lxc1a2b3c4d5e6f", WEB1: "lxc0f1e2d3c4b5a", WEB2: "lxc9a8b7c6d5e4f"}
CALI = {SRC: "cali1a2b3c4d5e6", WEB1: "cali0f1e2d3c4b5", WEB2: "cali9a8b7c6d5e4"}
NODE_OF = {SRC: "node-1", WEB1: "node-2", WEB2: "node-2"}


def node_ip(node: str) -> str:
    return f"172.30.0.{node[-1]}"


def cilium_inventory(node: str, tunnel: str = "cilium_vxlan", port: int = 8472) -> Inventory:
    """`ip link/addr/route/neigh` on a Cilium node in tunnel mode: no per-pod route in the main
    table, the remote pod CIDR via the router IP on cilium_host (what `ip route` shows; the BPF
    programs never use it)."""
    n = int(node[-1])
    pods = [ip for ip, where in NODE_OF.items() if where == node]
    interfaces = [
        Interface(1, "lo", InterfaceKind.LOOPBACK, 65536, addresses=("127.0.0.1/8",)),
        Interface(2, "eth0", InterfaceKind.DEVICE, 1500, addresses=(f"{node_ip(node)}/24",)),
        Interface(3, "cilium_net", InterfaceKind.VETH, 1500),
        Interface(4, "cilium_host", InterfaceKind.VETH, 1500, addresses=(f"10.244.{n}.1/32",)),
        Interface(5, tunnel, InterfaceKind.OVERLAY, 1500, overlay_port=port),
        *(Interface(10 + i, LXC[ip], InterfaceKind.VETH, 1500) for i, ip in enumerate(pods)),
    ]
    other = 3 - n
    routes = (Route("default", "eth0", "172.30.0.254"), Route("172.30.0.0/24", "eth0"),
              Route(f"10.244.{n}.0/24", "cilium_host", f"10.244.{n}.1"),
              Route(f"10.244.{other}.0/24", "cilium_host", f"10.244.{n}.1"))
    return Inventory(tuple(interfaces), routes, neighbours=tuple((ip, "aa:bb:cc:00:00:01", LXC[ip]) for ip in pods))


def calico_inventory(node: str) -> Inventory:
    """A Calico node with VXLAN: per pod a cali veth and a /32 route to it; the other node's /26
    through vxlan.calico."""
    n = int(node[-1])
    pods = [ip for ip, where in NODE_OF.items() if where == node]
    interfaces = [
        Interface(1, "lo", InterfaceKind.LOOPBACK, 65536, addresses=("127.0.0.1/8",)),
        Interface(2, "eth0", InterfaceKind.DEVICE, 1500, addresses=(f"{node_ip(node)}/24",)),
        Interface(3, "vxlan.calico", InterfaceKind.OVERLAY, 1450, addresses=(f"10.244.{n}.0/32",), link="eth0",
                  overlay_port=4789),
        *(Interface(10 + i, CALI[ip], InterfaceKind.VETH, 1500) for i, ip in enumerate(pods)),
    ]
    other = 3 - n
    routes = [Route("default", "eth0", "172.30.0.254"), Route("172.30.0.0/24", "eth0"),
              Route(f"10.244.{other}.0/26", "vxlan.calico", f"10.244.{other}.0"),
              *(Route(f"{ip}/32", CALI[ip]) for ip in pods)]
    return Inventory(tuple(interfaces), tuple(routes))


def ipvs_inventory(node: str) -> Inventory:
    """A Calico node whose kube-proxy runs in IPVS mode: every Service IP bound on the dummy kube-ipvs0."""
    inv = calico_inventory(node)
    ipvs = Interface(6, "kube-ipvs0", InterfaceKind.DEVICE, 1500, addresses=(f"{CLUSTER_IP}/32", "10.96.0.10/32"))
    return replace(inv, interfaces=(*inv.interfaces, ipvs))


@dataclass
class Scene:
    """The packets each capture point saw ("source": the probe's own eth0; node-N: every interface)."""

    inventories: dict
    packets: dict = field(default_factory=lambda: {"source": [], "node-1": [], "node-2": []})
    nat: dict = field(default_factory=lambda: {"node-1": [], "node-2": []})
    tunnel: tuple[str, int] = ("vxlan", 8472)

    def add(self, where, interface, t, **fields):
        fields.setdefault("length", 60)
        self.packets[where].append(Packet(len(self.packets[where]), t, 0, interface, Direction.IN, **fields))

    def flow(self, route, *, t, key, dst, dport, reach=None, reply=True):
        """A TCP connection from the source: its SYN at route[:reach], the SYN-ACK back through them."""
        reach = len(route) if reach is None else reach
        for i, (where, interface, under) in enumerate(route[:reach]):
            self.add(where, interface, t + i * 0.001, proto="tcp", src=SRC, dst=dst, sport=key, dport=dport,
                     tcp_flags="S", encap=self._encap(under, True))
        if reply and reach == len(route):
            for j, (where, interface, under) in enumerate(reversed(route)):
                self.add(where, interface, t + 0.05 + j * 0.001, proto="tcp", src=dst, dst=SRC, sport=dport,
                         dport=key, tcp_flags="SA", encap=self._encap(under, False))

    def _encap(self, under, request):
        if not under:
            return None
        a, b = node_ip("node-1"), node_ip("node-2")
        kind, port = self.tunnel
        return Encap(kind, a, b, port, 2) if request else Encap(kind, b, a, port, 2)

    def captures(self):
        return (Capture("probe source", "node-1", "source", tuple(self.packets["source"]), None),
                *(Capture(n, n, None, tuple(sorted(self.packets[n], key=lambda p: p.time)), self.inventories[n],
                          tuple(self.nat[n])) for n in ("node-1", "node-2")))


def cilium_route(dst, tunnel="cilium_vxlan"):
    return [("source", "eth0", False), ("node-1", LXC[SRC], False), ("node-1", tunnel, False),
            ("node-1", "eth0", True), ("node-2", "eth0", True), ("node-2", tunnel, False), ("node-2", LXC[dst], False)]


def calico_route(dst):
    return [("source", "eth0", False), ("node-1", CALI[SRC], False), ("node-1", "vxlan.calico", False),
            ("node-1", "eth0", True), ("node-2", "eth0", True), ("node-2", "vxlan.calico", False),
            ("node-2", CALI[dst], False)]


def pod(name, ip, node):
    return Pod("demo", name, f"uid-{name}", (("app", "web"),), node, ip, node_ip(node), "Running", True)


SERVICE = Service("demo", "web", "ClusterIP", CLUSTER_IP, False, (ServicePort("http", "TCP", 80, 8080),),
                  (("app", "web"),))


def cluster(cni: Cni, proxy: ServiceProxy) -> ClusterKind:
    mode = ProxyMode.EBPF if proxy is not ServiceProxy.KUBE_PROXY else ProxyMode.NFTABLES
    return ClusterKind(CniKind(cni, Overlay.VXLAN, Confidence.HIGH), ProxyKind(proxy, mode, Confidence.HIGH))


def evidence(scene: Scene, steps, observations=(), kind: ClusterKind | None = None, **changes) -> Evidence:
    facts = Facts(namespace="demo", target=Ref(Kind.SERVICE, "web"), source="probe on node-1", source_node="node-1",
                  source_pod=None, source_namespace="demo", port=80, target_port=8080, service=SERVICE,
                  service_port=SERVICE.ports[0], backends=(pod("web-1", WEB1, "node-2"), pod("web-2", WEB2, "node-2")),
                  nodes=(Node("node-1", node_ip("node-1"), True), Node("node-2", node_ip("node-2"), True)),
                  policy=(), cluster=kind)
    facts = replace(facts, **changes)
    plan = Plan((PlannedProbe("source", "node-1", "demo", capture=True),), tuple(steps))
    return Evidence(facts, plan, tuple(observations), scene.captures(),
                    {"source": RunningProbe("source", "nd-probe-source", SRC, "node-1")})


def tcp_step(key, ip, port, attempts=1) -> Step:
    service = ip == CLUSTER_IP
    return Step(key, "ND-SVC-001" if service else "ND-POD-001", Layer.SERVICE if service else Layer.POD, "source",
                TcpConnect(ip, port, attempts), title=f"source → {ip}:{port}")


def connected(step: Step, n: int) -> Observation:
    action = step.action
    return Observation(step.key, tuple(TcpResult(action.ip, action.port, TcpOutcome.CONNECTED, 0.01) for _ in range(n)))


def path_of(ev: Evidence, key: str):
    return next(p for p in paths(ev) if p.step_key == key)


# --- Cilium: translated at the socket ----------------------------------------------------------


def socket_scene(tunnel="cilium_vxlan", port=8472, kind="vxlan") -> tuple[Scene, list[Step], list[Observation]]:
    """The source's pod-IP check to web-1 (one connection) and its three Service connections, each
    already addressed to a backend by the socket: web-1, web-2, web-1. No packet carries the Service IP."""
    scene = Scene({"node-1": cilium_inventory("node-1", tunnel, port), "node-2": cilium_inventory("node-2", tunnel, port)},
                  tunnel=(kind, port))
    pod_step, svc_step = tcp_step("pod:web-1", WEB1, 8080), tcp_step("svc:web", CLUSTER_IP, 80, attempts=3)
    scene.flow(cilium_route(WEB1, tunnel), t=T0, key=40000, dst=WEB1, dport=8080)
    for n, backend in enumerate((WEB1, WEB2, WEB1)):
        scene.flow(cilium_route(backend, tunnel), t=T0 + 0.2 + n * 0.01, key=41000 + n, dst=backend, dport=8080)
    return scene, [pod_step, svc_step], [connected(pod_step, 1), connected(svc_step, 3)]


def test_a_service_translated_at_the_socket_is_a_normal_path_that_says_so():
    scene, steps, observed = socket_scene()
    ev = evidence(scene, steps, observed, cluster(Cni.CILIUM, ServiceProxy.CILIUM))
    path = path_of(ev, "svc:web")
    assert path.outcome is PathOutcome.DELIVERED and path.cause == "delivered"
    assert path.connections == 3  # the pod-IP check's own connection is not one of the Service's
    assert spread(ev, steps[1]) == ((f"{WEB1}:8080", 2), (f"{WEB2}:8080", 1)) == path.backends
    assert path.hops[0].label == "source eth0"
    assert path.hops[0].note.startswith(f"translated at the socket by Cilium: {CLUSTER_IP}:80 → 10.244.2.2")
    assert "no Service IP on the wire" in path.hops[0].note
    assert all(h.request and h.reply is Reply.ANSWER for h in path.hops)
    assert "DNAT" not in " ".join(h.note for h in path.hops)
    pod_path = path_of(ev, "pod:web-1")
    assert pod_path.connections == 1 and "translated" not in pod_path.hops[0].note


def test_cilium_hops_are_named_in_its_words_and_cilium_host_is_not_drawn():
    scene, steps, observed = socket_scene()
    path = path_of(evidence(scene, steps, observed), "pod:web-1")
    assert [h.label for h in path.hops] == [
        "source eth0", f"node-1 {LXC[SRC]}", "node-1 cilium_vxlan", "node-1 eth0", "node-2 eth0",
        "node-2 cilium_vxlan", f"node-2 {LXC[WEB1]}"]
    assert [h.kind for h in path.hops] == [HopKind.POD, HopKind.VETH, HopKind.OVERLAY, HopKind.UNDERLAY,
                                           HopKind.UNDERLAY, HopKind.OVERLAY, HopKind.VETH]


def test_the_socket_translation_is_told_from_the_devices_when_the_api_said_nothing():
    scene, steps, observed = socket_scene()
    path = path_of(evidence(scene, steps, observed, kind=None), "svc:web")
    assert "translated at the socket by Cilium" in path.hops[0].note


def test_a_backend_only_the_pod_ip_check_reached_is_not_counted_for_the_service():
    """web-2 got the pod-IP check's connection only: the Service's three went to web-1."""
    scene = Scene({"node-1": cilium_inventory("node-1"), "node-2": cilium_inventory("node-2")})
    pod_step, svc_step = tcp_step("pod:web-2", WEB2, 8080), tcp_step("svc:web", CLUSTER_IP, 80, attempts=3)
    scene.flow(cilium_route(WEB2), t=T0, key=40000, dst=WEB2, dport=8080)
    for n in range(3):
        scene.flow(cilium_route(WEB1), t=T0 + 0.01 * n, key=41000 + n, dst=WEB1, dport=8080)
    ev = evidence(scene, [pod_step, svc_step], [connected(pod_step, 1), connected(svc_step, 3)])
    assert spread(ev, svc_step) == ((f"{WEB1}:8080", 3),)


def test_tunnel_blocked_between_cilium_nodes_is_overlay_blocked_not_a_source_drop():
    scene = Scene({"node-1": cilium_inventory("node-1"), "node-2": cilium_inventory("node-2")})
    step = tcp_step("pod:web-1", WEB1, 8080)
    scene.flow(cilium_route(WEB1), t=T0, key=40000, dst=WEB1, dport=8080, reach=4, reply=False)
    path = path_of(evidence(scene, [step]), "pod:web-1")
    assert path.outcome is PathOutcome.DROPPED and path.cause == "overlay-blocked", path
    assert path.hops[path.at].label == "node-2 eth0"
    assert dict(path.params)["tunnel"] == "VXLAN 172.30.0.1 → 172.30.0.2"


def test_a_stale_service_map_on_the_source_node_is_named_as_ciliums():
    """Cilium's agent on node-1 lost the Service: the pod's SYN leaves still addressed to the Service IP."""
    scene = Scene({"node-1": cilium_inventory("node-1"), "node-2": cilium_inventory("node-2")})
    step = tcp_step("svc:web", CLUSTER_IP, 80)
    route = [("source", "eth0", False), ("node-1", LXC[SRC], False), ("node-1", "eth0", False)]
    scene.flow(route, t=T0, key=41000, dst=CLUSTER_IP, dport=80, reply=False, reach=3)
    scene.flow(route, t=T0 + 1, key=41000, dst=CLUSTER_IP, dport=80, reply=False, reach=3)  # the SYN resent
    for kind, expected in ((cluster(Cni.CILIUM, ServiceProxy.CILIUM), "service-map-stale"), (None, "service-map-stale"),
                           (cluster(Cni.CILIUM, ServiceProxy.KUBE_PROXY), "untranslated")):
        path = path_of(evidence(scene, [step], (), kind), "svc:web")
        assert path.outcome is PathOutcome.DROPPED and path.cause == expected, (kind, path)
        params = dict(path.params)
        assert params["node"] == "node-1"
        assert [h.label for h in path.hops] == ["source eth0", f"node-1 {LXC[SRC]}", "node-1 eth0"], path.hops
        if expected == "service-map-stale":
            assert params["proxy"] == "Cilium"


def test_geneve_between_cilium_nodes_is_followed_like_vxlan():
    """Crafted only: the lab's kernel has no Geneve. cilium_geneve, UDP 6081."""
    scene, steps, observed = socket_scene("cilium_geneve", 6081, "geneve")
    path = path_of(evidence(scene, steps, observed), "pod:web-1")
    assert path.outcome is PathOutcome.DELIVERED
    assert "node-1 cilium_geneve" in [h.label for h in path.hops]
    assert path.hops[3].note == "GENEVE 172.30.0.1 → 172.30.0.2"
    scene.packets["node-2"].clear()
    scene.flow(cilium_route(WEB1, "cilium_geneve"), t=T0 + 5, key=42000, dst=WEB1, dport=8080, reach=4, reply=False)
    lost = paths(evidence(scene, [tcp_step("pod:web-1", WEB1, 8080)]))[0]
    assert lost.cause == "overlay-blocked" and dict(lost.params)["tunnel"].startswith("GENEVE")


# --- Calico ------------------------------------------------------------------------------------


def test_calico_hops_are_its_cali_veths_and_vxlan_calico_with_no_bridge():
    scene = Scene({"node-1": calico_inventory("node-1"), "node-2": calico_inventory("node-2")}, tunnel=("vxlan", 4789))
    step = tcp_step("pod:web-1", WEB1, 8080)
    scene.flow(calico_route(WEB1), t=T0, key=40000, dst=WEB1, dport=8080)
    path = path_of(evidence(scene, [step]), "pod:web-1")
    assert path.outcome is PathOutcome.DELIVERED
    assert [h.label for h in path.hops] == [
        "source eth0", f"node-1 {CALI[SRC]}", "node-1 vxlan.calico", "node-1 eth0", "node-2 eth0",
        "node-2 vxlan.calico", f"node-2 {CALI[WEB1]}"]
    assert HopKind.BRIDGE not in [h.kind for h in path.hops]


def test_calico_node_without_its_32_route_to_its_own_pod_is_named():
    """node-2 lost the /32 route to web-1 (Felix did not program it): the SYN arrives on node-2 and
    never reaches web-1's cali veth."""
    inventories = {"node-1": calico_inventory("node-1"), "node-2": calico_inventory("node-2")}
    inventories["node-2"] = replace(inventories["node-2"], routes=tuple(
        r for r in inventories["node-2"].routes if r.destination != f"{WEB1}/32"))
    scene = Scene(inventories, tunnel=("vxlan", 4789))
    step = tcp_step("pod:web-1", WEB1, 8080)
    scene.flow(calico_route(WEB1), t=T0, key=40000, dst=WEB1, dport=8080, reach=6, reply=False)
    path = path_of(evidence(scene, [step]), "pod:web-1")
    assert path.outcome is PathOutcome.DROPPED and path.hops[path.at].node == "node-2"
    assert path.cause == "no-pod-route" and path.hops[path.at].label == "node-2 veth", path
    assert dict(path.params)["last"] == "node-2 vxlan.calico"


def ipip_inventory(node: str) -> Inventory:
    """A Calico node with IP-in-IP: tunl0 (no UDP port), the other node's /26 through it, onlink."""
    inv = calico_inventory(node)
    n = int(node[-1])
    tunl0 = Interface(3, "tunl0", InterfaceKind.OVERLAY, 1480, addresses=(f"10.244.{n}.0/32",), tunnel="ipip")
    return replace(inv, interfaces=tuple(tunl0 if i.name == "vxlan.calico" else i for i in inv.interfaces),
                   routes=tuple(replace(r, device="tunl0", via=node_ip(f"node-{3 - n}")) if r.device == "vxlan.calico"
                                else r for r in inv.routes))


def test_ip_in_ip_is_followed_on_tunl0_and_the_underlay_said_unobserved():
    """Crafted only: the lab's kernel has no IP-in-IP, and the capture does not decode it on eth0."""
    scene = Scene({"node-1": ipip_inventory("node-1"), "node-2": ipip_inventory("node-2")})
    route = [("source", "eth0", False), ("node-1", CALI[SRC], False), ("node-1", "tunl0", False),
             ("node-2", "tunl0", False), ("node-2", CALI[WEB1], False)]
    step = tcp_step("pod:web-1", WEB1, 8080)
    scene.flow(route, t=T0, key=40000, dst=WEB1, dport=8080)
    path = path_of(evidence(scene, [step]), "pod:web-1")
    assert path.outcome is PathOutcome.DELIVERED
    assert [h.label for h in path.hops] == ["source eth0", f"node-1 {CALI[SRC]}", "node-1 tunl0", "node-1 eth0",
                                            "node-2 eth0", "node-2 tunl0", f"node-2 {CALI[WEB1]}"]
    assert [bool(h.blind) for h in path.hops] == [False, False, False, True, True, False, False]
    assert "IP-in-IP" in path.hops[3].blind
    scene.packets["node-2"].clear()
    scene.flow(route, t=T0 + 5, key=40001, dst=WEB1, dport=8080, reach=3, reply=False)
    lost = path_of(evidence(scene, [step]), "pod:web-1")
    assert lost.outcome is PathOutcome.DROPPED and lost.cause == "blind" and lost.hops[lost.at].label == "node-1 eth0"


# --- kube-proxy in IPVS mode (crafted only: the lab's kernel has no IPVS) -----------------------


def test_ipvs_translation_is_followed_and_kube_ipvs0_is_no_hop():
    inventories = {"node-1": ipvs_inventory("node-1"), "node-2": ipvs_inventory("node-2")}
    scene = Scene(inventories, tunnel=("vxlan", 4789))
    step = tcp_step("svc:web", CLUSTER_IP, 80)
    route = calico_route(WEB1)
    # IPVS rewrites the destination on the source node after the cali veth, as kube-proxy's DNAT would
    for i, (where, interface, under) in enumerate(route):
        dst, port = (CLUSTER_IP, 80) if i < 2 else (WEB1, 8080)
        scene.add(where, interface, T0 + i * 0.001, proto="tcp", src=SRC, dst=dst, sport=41000, dport=port,
                  tcp_flags="S", encap=scene._encap(under, True))
    for j, (where, interface, under) in enumerate(reversed(route)):
        i = len(route) - 1 - j
        src, port = (CLUSTER_IP, 80) if i < 2 else (WEB1, 8080)
        scene.add(where, interface, T0 + 0.05 + j * 0.001, proto="tcp", src=src, dst=SRC, sport=port, dport=41000,
                  tcp_flags="SA", encap=scene._encap(under, False))
    scene.nat["node-1"].append(NatEntry("tcp", SRC, 41000, CLUSTER_IP, 80, WEB1, 8080))
    ev = evidence(scene, [step], [connected(step, 1)], cluster(Cni.CALICO, ServiceProxy.KUBE_PROXY))
    path = path_of(ev, "svc:web")
    assert path.outcome is PathOutcome.DELIVERED, path
    assert "kube-ipvs0" not in [h.interface for h in path.hops]
    assert path.hops[2].note.startswith(f"DNAT → {WEB1}:8080")
    assert spread(ev, step) == ((f"{WEB1}:8080", 1),)


def test_a_df_ping_the_senders_own_route_refuses_is_no_loss():
    """Cilium's pod: eth0 at 1500, its routes at 1450. ping -M do -s 1472 fails locally (frag needed):
    nothing on the wire, and the sender knows the path MTU."""
    from netdoctor.model import Ping
    from netdoctor.observations import PingOutcome, PingResult

    scene = Scene({"node-1": cilium_inventory("node-1"), "node-2": cilium_inventory("node-2")})
    step = Step("ping:big", "ND-NODE-004", Layer.NODE, "source", Ping(WEB1, 1472, True), title="ping 1472B DF")
    ev = evidence(scene, [step], [Observation(step.key, PingResult(WEB1, 1472, PingOutcome.FRAG_NEEDED, mtu=1450))])
    path = path_of(ev, "ping:big")
    assert (path.outcome, path.cause, path.hops, dict(path.params)["size"]) == (PathOutcome.UNKNOWN, "mtu-known", (), "1450")
    lost = path_of(evidence(scene, [step], [Observation(step.key, PingResult(WEB1, 1472, PingOutcome.TIMEOUT))]),
                   "ping:big")
    assert lost.cause == "not-seen"


def bgp_inventory(node: str, peer_routes: bool = True) -> Inventory:
    """A Calico node with BGP routes (no tunnel): the other node's /26 via its node IP, proto bird."""
    inv = calico_inventory(node)
    n = int(node[-1])
    routes = tuple(r for r in inv.routes if r.device != "vxlan.calico")
    peer = (Route(f"10.244.{3 - n}.0/26", "eth0", node_ip(f"node-{3 - n}")),) if peer_routes else ()
    return replace(inv, interfaces=tuple(i for i in inv.interfaces if i.name != "vxlan.calico"), routes=routes + peer)


def test_a_routed_node_without_its_route_to_the_peers_pods_is_no_route_not_the_fabric():
    """Calico BGP: node-1 lost its route to node-2's /26 and sends by its default route, while
    node-2 still routes node-1's pods via node-1's IP."""
    scene = Scene({"node-1": bgp_inventory("node-1", peer_routes=False), "node-2": bgp_inventory("node-2")})
    route = [("source", "eth0", False), ("node-1", CALI[SRC], False), ("node-1", "eth0", False),
             ("node-2", "eth0", False), ("node-2", CALI[WEB1], False)]
    step = tcp_step("pod:web-1", WEB1, 8080)
    scene.flow(route, t=T0, key=40000, dst=WEB1, dport=8080, reach=3, reply=False)
    path = path_of(evidence(scene, [step]), "pod:web-1")
    assert path.cause == "no-route" and dict(path.params)["node"] == "node-1", path
    # A cloud that routes pod IPs itself (no per-peer route anywhere): the fabric, not a missing route.
    scene.inventories["node-2"] = bgp_inventory("node-2", peer_routes=False)
    assert path_of(evidence(scene, [step]), "pod:web-1").cause == "fabric-drop"


def test_a_node_whose_underlay_is_a_veth_keeps_it_as_the_underlay():
    """In a lab of network namespaces the node's eth0 is a veth too: holding the node IP, it is the
    underlay, not a CNI's host device, for the routes through it and for the hops seen there."""
    inventories = {}
    for node in ("node-1", "node-2"):
        inv = cilium_inventory(node)
        inventories[node] = replace(inv, interfaces=tuple(
            replace(i, kind=InterfaceKind.VETH) if i.name == "eth0" else i for i in inv.interfaces))
    scene = Scene(inventories)
    step = tcp_step("svc:web", CLUSTER_IP, 80)
    route = [("source", "eth0", False), ("node-1", LXC[SRC], False), ("node-1", "eth0", False)]
    scene.flow(route, t=T0, key=41000, dst=CLUSTER_IP, dport=80, reply=False, reach=3)
    path = path_of(evidence(scene, [step]), "svc:web")
    assert [(h.label, h.kind) for h in path.hops] == [
        ("source eth0", HopKind.POD), (f"node-1 {LXC[SRC]}", HopKind.VETH), ("node-1 eth0", HopKind.UNDERLAY)]
    assert path.cause == "service-map-stale"


def test_ciliums_packet_filtered_in_the_pods_name_is_a_reject_on_the_source_node():
    """Cilium rejects an egress deny with ICMP "administratively prohibited" (packet filtered) whose
    source is the destination's own address: a filter's answer, no pod stack sends it."""
    from netdoctor.observations import Quoted, RefusalKind

    scene = Scene({"node-1": cilium_inventory("node-1"), "node-2": cilium_inventory("node-2")})
    step = tcp_step("pod:web-1", WEB1, 8080)
    scene.flow(cilium_route(WEB1), t=T0, key=40000, dst=WEB1, dport=8080, reach=2, reply=False)
    for where, interface in (("node-1", LXC[SRC]), ("source", "eth0")):
        scene.add(where, interface, T0 + 0.01, proto="icmp", src=WEB1, dst=SRC, icmp_type=3, icmp_code=13,
                  quoted=Quoted("tcp", SRC, WEB1, 40000, 8080))
    path = path_of(evidence(scene, [step]), "pod:web-1")
    assert path.outcome is PathOutcome.REJECTED and path.refusal.kind is RefusalKind.REJECT, path
    assert path.hops[path.at].label == f"node-1 {LXC[SRC]}" and path.cause == "firewall-reject"


def test_a_service_without_backends_is_refused_at_the_socket_under_cilium():
    """Cilium's connect hook refuses a Service with no backend (EHOSTUNREACH): nothing on the wire,
    the source's own hop says who refused."""
    scene = Scene({"node-1": cilium_inventory("node-1"), "node-2": cilium_inventory("node-2")})
    step = tcp_step("svc:web", CLUSTER_IP, 80, attempts=3)
    observed = Observation(step.key, tuple(TcpResult(CLUSTER_IP, 80, TcpOutcome.UNREACHABLE, 0.001) for _ in range(3)))
    ev = evidence(scene, [step], [observed], cluster(Cni.CILIUM, ServiceProxy.CILIUM))
    ev = replace(ev, facts=replace(ev.facts, backends=()))
    path = path_of(ev, "svc:web")
    assert (path.outcome, path.cause, path.at) == (PathOutcome.REJECTED, "no-endpoints", 0), path
    assert path.hops[0].label == "source eth0" and path.hops[0].node == "node-1"
    assert "refused at the socket by Cilium" in path.hops[0].note
    # kube-proxy's cluster: nothing seen is nothing known
    flannelish = replace(ev, facts=replace(ev.facts, cluster=cluster(Cni.CALICO, ServiceProxy.KUBE_PROXY)))
    assert path_of(flannelish, "svc:web").cause == "not-seen"


def test_a_calico_pod_whose_gateway_does_not_answer_is_said_so():
    """proxy_arp off on the pod's cali veth: 169.254.1.1 never resolves, nothing leaves the pod and
    every connect ends 'No route to host'."""
    scene = Scene({"node-1": calico_inventory("node-1"), "node-2": calico_inventory("node-2")})
    step = tcp_step("pod:web-1", WEB1, 8080)
    observed = Observation(step.key, (TcpResult(WEB1, 8080, TcpOutcome.UNREACHABLE, 3.0, "No route to host"),))
    path = path_of(evidence(scene, [step], [observed]), "pod:web-1")
    assert (path.outcome, path.cause, path.at) == (PathOutcome.DROPPED, "gateway-unanswered", 0), path
    assert dict(path.params)["why"] == f"node-1's {CALI[SRC]}"
    # a timeout (the SYN was sent but not captured) says nothing about the gateway
    timed_out = Observation(step.key, (TcpResult(WEB1, 8080, TcpOutcome.TIMEOUT, 3.0),))
    assert path_of(evidence(scene, [step], [timed_out]), "pod:web-1").cause == "not-seen"


# --- Calico without a bridge: what the source's own veth is not --------------------------------


def calico_scene() -> Scene:
    return Scene({"node-1": calico_inventory("node-1"), "node-2": calico_inventory("node-2")}, tunnel=("vxlan", 4789))


SOURCE_SIDE = [("source", "eth0", False), ("node-1", CALI[SRC], False)]


def test_a_service_syn_lost_right_after_the_sources_own_cali_veth_was_never_delivered():
    """The DNAT chose a backend and the node's forwarding dropped the SYN (a dropped packet's
    conntrack entry is never confirmed, so nothing says which backend): the last hop that saw it is
    the source's own veth, which is no pod's door. Was 'delivered to the pod, never answered'."""
    scene = calico_scene()
    scene.flow(SOURCE_SIDE, t=T0, key=40100, dst=CLUSTER_IP, dport=80, reply=False)
    path = path_of(evidence(scene, [tcp_step("svc:web", CLUSTER_IP, 80)]), "svc:web")
    assert path.outcome is PathOutcome.DROPPED and path.at == 1
    assert path.cause == "destination-drop", path  # as at flannel's cni0: lost on its way to the destination
    assert "translated to" in dict(path.params)["hop"]


def test_the_same_loss_with_every_backend_denied_ingress_is_the_policy():
    from ipaddress import IPv4Address

    from netdoctor.model import PolicyFlow
    from netdoctor.policy import model as pm
    from netdoctor.policy.engine import DirectionState, DirectionVerdict, FlowVerdict

    def denied(name, ip):
        src, dst = pm.Pod("demo", "source", {}, (IPv4Address(SRC),)), pm.Pod("demo", name, {}, (IPv4Address(ip),))
        return PolicyFlow(name, FlowVerdict(src, dst, pm.Protocol.TCP, 8080,
                                            DirectionVerdict(pm.Direction.EGRESS, DirectionState.NOT_ISOLATED, src.key),
                                            DirectionVerdict(pm.Direction.INGRESS, DirectionState.DENIED, dst.key)))

    scene = calico_scene()
    scene.flow(SOURCE_SIDE, t=T0, key=40101, dst=CLUSTER_IP, dport=80, reply=False)
    ev = evidence(scene, [tcp_step("svc:web", CLUSTER_IP, 80)], policy=(denied("web-1", WEB1), denied("web-2", WEB2)))
    path = path_of(ev, "svc:web")
    assert (path.outcome, path.cause, path.hops[path.at].node) == (PathOutcome.DROPPED, "policy-ingress", "node-1")


def test_a_silent_loss_at_a_service_without_ready_endpoints_is_its_rules_whose_icmp_was_rate_limited():
    """kube-proxy rejects connections to a Service without endpoints with ICMP port unreachable, a
    few per second to each client: a burst's later connections vanish on the source's node."""
    from netdoctor.cluster.objects import EndpointAddress, EndpointSlice
    from netdoctor.judge.hops import SILENT_REJECT

    unready = (EndpointSlice("demo", "web-x", "web", "IPv4", (), (EndpointAddress(WEB1, False, False, True, "web-1",
                                                                                 "node-2"),)),)
    scene = calico_scene()
    scene.flow(SOURCE_SIDE, t=T0, key=40102, dst=CLUSTER_IP, dport=80, reply=False)
    path = path_of(evidence(scene, [tcp_step("svc:web", CLUSTER_IP, 80)], slices=unready), "svc:web")
    assert (path.outcome, path.cause, path.hops[path.at].node) == (PathOutcome.DROPPED, "no-endpoints", "node-1")
    assert dict(path.params)["answer"] == SILENT_REJECT
    path = path_of(evidence(scene, [tcp_step("svc:web", CLUSTER_IP, 80)]), "svc:web")  # ready endpoints
    assert path.cause != "no-endpoints"
