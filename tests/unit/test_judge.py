"""The judge, table-driven: each failure pattern from the checklist → first broken layer, the
most likely cause and its check ID. Facts are hand-made; observations come from a tiny simulated
cluster that answers each planned step."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

import pytest

from netdoctor import catalog
from netdoctor.check import plan
from netdoctor.judge.verdict import judge
from netdoctor.model import (
    Capture, DnsQuery, Evidence, Facts, InspectListeners, Kind, Layer, NearMiss, Observation, Ping, PolicyFlow,
    ReadResolvConf, Ref, RunningProbe, State, TcpConnect,
)
from netdoctor.cluster.objects import EndpointAddress, EndpointSlice, Node, Pod, Service, ServicePort
from netdoctor.observations import (
    BindScope, Direction, DnsOutcome, DnsResult, Interface, InterfaceKind, Inventory, Listener, ListenerStatus,
    ListenerTable, Packet, PingOutcome, PingResult, Quoted, ResolvConf, Route, TcpOutcome, TcpResult,
)

CLUSTER_IP, DNS_IP = "10.96.0.20", "10.96.0.10"


def pod(name, ip, node, ready=True, phase="Running", ns="demo", labels=(("app", "web"),)):
    return Pod(ns, name, f"uid-{name}", labels, node, ip, None, phase, ready)


BACKENDS = (pod("web-1", "10.244.1.5", "node-b"), pod("web-2", "10.244.0.7", "node-a"))
DNS_PODS = (pod("coredns-1", "10.244.0.2", "node-a", ns="kube-system"), pod("coredns-2", "10.244.1.2", "node-b", ns="kube-system"))
SERVICE = Service("demo", "web", "ClusterIP", CLUSTER_IP, False, (ServicePort("http", "TCP", 80, 8080),), (("app", "web"),))


def slices(backends=BACKENDS, ready=True):
    eps = tuple(EndpointAddress(p.ip, ready, ready, False, p.name, p.node_name) for p in backends)
    return (EndpointSlice("demo", "web-abc", "web", "IPv4", (), eps),)


def facts(**changes) -> Facts:
    base = Facts(
        namespace="demo", target=Ref(Kind.SERVICE, "web"), source="probe on node-a", source_node="node-a",
        source_pod=None, source_namespace="demo", port=80, target_port=8080, service=SERVICE,
        service_port=SERVICE.ports[0], backends=BACKENDS, slices=slices(),
        nodes=(Node("node-a", "192.168.0.1", True), Node("node-b", "192.168.0.2", True)),
        dns_service=Service("kube-system", "kube-dns", "ClusterIP", DNS_IP, False, (), ()), dns_backends=DNS_PODS,
        policy=(),
    )
    return replace(base, **changes)


@dataclass
class Cluster:
    """A healthy cluster; each knob breaks one thing. Functions get (probe node, ip, ...)."""

    tcp: Callable[[str, str, int], TcpOutcome] = lambda node, ip, port: TcpOutcome.CONNECTED
    dns: Callable[[str, str, int], DnsResult | None] = lambda server, name, attempt: None
    ping: Callable[[str, str, int], PingOutcome] = lambda node, ip, size: PingOutcome.REPLY
    listeners: dict = field(default_factory=dict)

    def observe(self, ev_plan, f: Facts) -> tuple[Observation, ...]:
        nodes = {p.role: p.node for p in ev_plan.probes}
        return tuple(Observation(s.key, self._result(s.action, nodes.get(s.probe), f)) for s in ev_plan.steps)

    def _result(self, action, node, f):
        if isinstance(action, TcpConnect):
            return tuple(TcpResult(action.ip, action.port, self.tcp(node, action.ip, action.port), 0.01)
                         for _ in range(action.attempts))
        if isinstance(action, DnsQuery):
            server = action.server or DNS_IP
            return tuple(self.dns(server, action.name, i) or DnsResult(action.name, "A", server, DnsOutcome.ANSWER, i,
                                                                     (CLUSTER_IP,)) for i in range(1, action.attempts + 1))
        if isinstance(action, ReadResolvConf):
            return ResolvConf((DNS_IP,), ("demo.svc.cluster.local", "svc.cluster.local", "cluster.local"), 5)
        if isinstance(action, Ping):
            return PingResult(action.ip, action.size, self.ping(node, action.ip, action.size))
        if isinstance(action, InspectListeners):
            scope = self.listeners.get(action.pod, BindScope.ANY)
            address = {BindScope.ANY: "0.0.0.0", BindScope.LOOPBACK: "127.0.0.1"}[scope]
            return ListenerTable(ListenerStatus.OK, (Listener(address, action.port, scope),))
        raise AssertionError(action)


CATALOG = catalog.load()


def run(f: Facts, cluster: Cluster):
    p = plan.build(f)
    return judge(Evidence(f, p, cluster.observe(p, f)), CATALOG)


def node_of(ip):
    return {p.ip: p.node_name for p in BACKENDS}.get(ip)


def denied_flows():
    from netdoctor.policy.engine import decide
    from netdoctor.policy.model import Protocol, world_from_objects

    objects = [
        {"kind": "Pod", "metadata": {"name": p.name, "namespace": "demo", "labels": dict(p.labels)},
         "status": {"podIP": p.ip}} for p in BACKENDS
    ] + [{"kind": "NetworkPolicy", "metadata": {"name": "deny-all", "namespace": "demo"},
          "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}]
    world = world_from_objects(objects)
    from netdoctor.policy.model import Pod as PPod

    source = PPod("demo", "probe", {"run": "probe"})
    return tuple(PolicyFlow(p.name, decide(world, source, world.pod(f"demo/{p.name}"), Protocol.TCP, 8080)) for p in BACKENDS)


DNS_ANSWER = lambda ips: lambda server, name, attempt: DnsResult(name, "A", server, DnsOutcome.ANSWER, attempt, ips)  # noqa: E731


CASES = {
    "healthy": (facts(), Cluster(), None, None, None),
    "selector mismatch": (
        facts(backends=(), slices=(), selector_misses=(NearMiss("api-v2-1", "app=api-v2"),)),
        Cluster(), Layer.ENDPOINTS, "ND-EP-002", "selector-mismatch"),
    "no ready endpoints": (
        facts(backends=tuple(replace(p, ready=False) for p in BACKENDS), slices=slices(ready=False)),
        Cluster(), Layer.TARGET, "ND-TGT-002", "not-ready"),
    "endpoints not ready though pods are": (
        facts(slices=slices(ready=False)), Cluster(), Layer.ENDPOINTS, "ND-EP-001", "none-ready"),
    "app bound to localhost": (
        facts(), Cluster(listeners={"web-1": BindScope.LOOPBACK},
                         tcp=lambda n, ip, port: TcpOutcome.REFUSED if ip == "10.244.1.5" else TcpOutcome.CONNECTED),
        Layer.TARGET, "ND-TGT-003", "loopback-only"),
    "targetPort wrong": (  # without capture, who refused is unknown (the pod, or a node's reject rule)
        facts(), Cluster(tcp=lambda n, ip, port: TcpOutcome.REFUSED if port == 8080 else TcpOutcome.CONNECTED,
                         listeners={}),
        Layer.POD, "ND-POD-001", "refused-unknown"),
    "DNS down": (
        facts(), Cluster(dns=lambda s, name, a: DnsResult(name, "A", s, DnsOutcome.TIMEOUT, a)),
        Layer.DNS, "ND-DNS-002", "timeout"),
    "DNS stale record": (
        facts(), Cluster(dns=DNS_ANSWER(("10.96.0.99",))), Layer.DNS, "ND-DNS-003", "stale"),
    "DNS lossy": (
        facts(), Cluster(dns=lambda s, name, a: DnsResult(name, "A", s, DnsOutcome.TIMEOUT, a) if a % 3 == 0 else None),
        Layer.DNS, "ND-DNS-004", "lossy"),
    "one DNS backend down": (
        facts(), Cluster(dns=lambda s, name, a: DnsResult(name, "A", s, DnsOutcome.TIMEOUT, a) if s == "10.244.1.2" else None),
        Layer.DNS, "ND-DNS-005", "backend-down"),
    "kube-proxy missing on the source's node": (
        facts(), Cluster(tcp=lambda n, ip, port: TcpOutcome.TIMEOUT if (n, ip) == ("node-a", CLUSTER_IP) else TcpOutcome.CONNECTED),
        Layer.SERVICE, "ND-SVC-001", "node-only"),
    "kube-proxy missing on another node": (
        facts(), Cluster(tcp=lambda n, ip, port: TcpOutcome.TIMEOUT if (n, ip) == ("node-b", CLUSTER_IP) else TcpOutcome.CONNECTED),
        Layer.NODE, "ND-NODE-003", "kube-proxy"),
    "cross-node blocked": (
        facts(), Cluster(tcp=lambda n, ip, port: TcpOutcome.TIMEOUT if node_of(ip) and node_of(ip) != n else TcpOutcome.CONNECTED,
                         ping=lambda n, ip, size: PingOutcome.TIMEOUT if node_of(ip) != n else PingOutcome.REPLY),
        Layer.NODE, "ND-NODE-002", "cross-node"),
    "MTU blackhole": (
        facts(), Cluster(ping=lambda n, ip, size: PingOutcome.TIMEOUT if size > 1422 and node_of(ip) != n else PingOutcome.REPLY),
        Layer.NODE, "ND-NODE-004", "mtu"),
    "policy denies": (
        facts(policy=denied_flows()), Cluster(tcp=lambda n, ip, port: TcpOutcome.TIMEOUT if node_of(ip) else TcpOutcome.CONNECTED),
        Layer.POLICY, "ND-POL-001", "ingress-denied"),
    "policy not enforced": (
        facts(policy=denied_flows()), Cluster(), Layer.POLICY, "ND-POL-002", "not-enforcing"),
    "node not ready": (
        facts(nodes=(Node("node-a", "192.168.0.1", True), Node("node-b", "192.168.0.2", False))),
        Cluster(tcp=lambda n, ip, port: TcpOutcome.TIMEOUT if ip == "10.244.1.5" else TcpOutcome.CONNECTED),
        Layer.NODE, "ND-NODE-001", "not-ready"),
}


@pytest.mark.parametrize("name", CASES)
def test_pattern_names_layer_cause_and_check(name):
    f, cluster, layer, check_id, cause = CASES[name]
    report = run(f, cluster)
    d = report.diagnosis
    assert (d.layer, d.check_id, d.cause) == (layer, check_id, cause), [
        (x.layer.value, c.check_id, c.state.value, c.cause, c.message) for x in report.layers for c in x.checks
        if c.state not in (State.PASS, State.SKIP)]
    assert (d.state is State.FAIL) == (layer is not None)


def test_the_broken_layer_is_the_causes_and_what_it_explains_are_its_consequences():
    f, cluster, *_ = CASES["policy denies"]
    report = run(f, cluster)
    assert report.diagnosis.layer is Layer.POLICY
    states = {c.check_id: c for layer in report.layers for c in layer.checks}
    explained = {i for i, c in states.items() if c.explained_by == "ND-POL-001:ingress-denied"}
    assert "ND-POD-001" in explained and set(report.diagnosis.consequences) == explained
    assert states["ND-POD-001"].state is State.FAIL  # still failed: it is the cause that is named
    assert states["ND-POL-001"].explained_by is None
    pod = next(layer for layer in report.layers if layer.layer is Layer.POD)
    assert pod.explained_by == "ND-POL-001:ingress-denied"


def test_a_failure_the_cause_does_not_explain_stays_a_fault_of_its_own():
    # kube-proxy missing on the source's node explains the Service IP and DNS, not a backend refusing
    f = facts()
    cluster = Cluster(tcp=lambda n, ip, port: TcpOutcome.TIMEOUT if (n, ip) == ("node-a", CLUSTER_IP)
                      else TcpOutcome.REFUSED if ip == "10.244.1.5" else TcpOutcome.CONNECTED, listeners={})
    report = run(f, cluster)
    pod_check = next(c for layer in report.layers for c in layer.checks if c.check_id == "ND-POD-001")
    assert pod_check.state is State.FAIL and pod_check.explained_by is None


def test_icmp_blocked_is_a_warning_not_a_failure():
    report = run(facts(), Cluster(ping=lambda n, ip, size: PingOutcome.TIMEOUT))
    node = next(layer for layer in report.layers if layer.layer is Layer.NODE)
    assert node.state is State.WARN
    assert report.diagnosis.state is State.WARN
    assert {c.check_id: c.state for c in node.checks}["ND-NODE-005"] is State.WARN


def test_selector_mismatch_names_the_nearest_miss_and_skips_the_service_ip():
    f = facts(backends=(), slices=(), selector_misses=(NearMiss("api-v2-1", "app=api-v2"),))
    report = run(f, Cluster())
    assert "pod api-v2-1 has app=api-v2" in report.diagnosis.headline
    service = next(layer for layer in report.layers if layer.layer is Layer.SERVICE)
    assert service.state is State.SKIP and "Endpoints" in service.reason


def test_remediation_commands_are_filled_in():
    report = run(facts(), Cluster(dns=lambda s, name, a: DnsResult(name, "A", s, DnsOutcome.TIMEOUT, a)))
    assert report.diagnosis.commands and all("<" not in c for c in report.diagnosis.commands)


def test_a_step_that_errored_makes_an_error_result_not_a_crash():
    f = facts()
    p = plan.build(f)
    observations = tuple(Observation(s.key, None, error="exec failed: boom") for s in p.steps)
    report = judge(Evidence(f, p, observations), CATALOG)
    pod_layer = next(layer for layer in report.layers if layer.layer is Layer.POD)
    assert pod_layer.state is State.ERROR
    assert "boom" in " ".join(pod_layer.checks[0].evidence)


def _ep_check(report):
    return next(c for layer in report.layers for c in layer.checks if c.check_id == "ND-EP-001")


def test_a_rollout_counts_ready_and_terminating_endpoints_the_same_way_everywhere():
    leaving = (EndpointAddress("10.244.1.90", False, False, True, "web-old-1", "node-a"),
               EndpointAddress("10.244.2.90", False, True, True, "web-old-2", "node-b"))
    slice_ = slices()[0]
    report = run(facts(slices=(replace(slice_, endpoints=slice_.endpoints + leaving),)), Cluster())
    check = _ep_check(report)
    assert check.state is State.PASS and check.message == "2/2 endpoints ready, 2 terminating"


def test_some_endpoints_not_ready_is_a_warning_whose_summary_matches_its_detail():
    stuck = (EndpointAddress("10.244.1.91", False, False, False, "web-new-1", "node-a"),
             EndpointAddress("10.244.2.91", False, False, False, "web-new-2", "node-b"))
    slice_ = slices()[0]
    report = run(facts(slices=(replace(slice_, endpoints=slice_.endpoints + stuck),)), Cluster())
    check = _ep_check(report)
    assert (check.state, check.cause, check.message) == (State.WARN, "partly-ready", "2/4 endpoints ready")
    assert report.diagnosis.headline == "Service web has 2 of 4 endpoints ready (2 not ready, 0 terminating)"


def test_a_failing_check_does_not_repeat_its_evidence_in_its_log():
    f, cluster, *_ = CASES["cross-node blocked"]
    p = plan.build(f)
    # the runner's log of a step: where it ran, then the step's outcome (what the evidence also says)
    observations = tuple(replace(o, log=(f"in demo/probe-{o.step_key}", f"{step.title or step.key}: timeout"))
                         for o, step in zip(cluster.observe(p, f), p.steps))
    report = judge(Evidence(f, p, observations), CATALOG)
    failing = [c for layer in report.layers for c in layer.checks if c.state is State.FAIL and c.evidence]
    assert failing
    for c in failing:
        said = {line.partition(": ")[0] for line in c.evidence}
        assert c.log and not [line for line in c.log if line in c.evidence or line.partition(": ")[0] in said], c


def test_unsaid_keeps_only_what_the_evidence_does_not_say():
    from netdoctor.judge.common import unsaid

    evidence = ["pod web-1 (10.244.1.5): timeout (0/3)", "2 EndpointSlice(s)"]
    log = ["in demo/netdoctor-x-client", "pod web-1 (10.244.1.5): timeout, timeout, timeout", "2 EndpointSlice(s)",
           "pod web-2 (10.244.2.5): connected"]
    assert unsaid(evidence, log) == ("in demo/netdoctor-x-client", "pod web-2 (10.244.2.5): connected")


# --- refusals told apart: the captures say who refused -------------------------------------
# A tiny capture of each refused connection, on the topology the plan places: a pod capture of
# the probe's eth0 and a node capture (inventory + packets) per node, pods on /32 host routes,
# nodes routing each other's pod CIDR over eth0. "pod": the backend resets it; "reject": the
# backend's node answers with ICMP port unreachable from its cni0 address (kube-router), which
# conntrack rewrites into the ClusterIP on the client's node for a Service connection.

NODE_IP = {"node-a": "192.168.0.1", "node-b": "192.168.0.2"}
CIDR = {"node-a": "10.244.0", "node-b": "10.244.1"}
T0 = 1_700_000_000.0


class Wire:
    """The packets of every refused connection, by capture point and interface."""

    def __init__(self, p, who: Callable[[str, str, int], str]):
        self.who = who
        traffic = [x for x in p.probes if x.purpose.value == "traffic"]
        self.probes = {x.role: RunningProbe(x.role, f"nd-{x.role}", f"{CIDR[x.node]}.{100 + i}", x.node)
                       for i, x in enumerate(traffic)}
        self.veth = {ip: f"veth{ip.rsplit('.', 1)[1]}{node[-1]}" for ip, node in self._pods()}
        self.packets: dict[str, list[Packet]] = {}
        self.conns = 0

    def _pods(self):
        return [(b.ip, b.node_name) for b in BACKENDS] + [(r.ip, r.node) for r in self.probes.values()]

    def add(self, where: str, interface: str, t: float, **fields) -> None:
        found = self.packets.setdefault(where, [])
        found.append(Packet(len(found), t, 0, interface, Direction.IN, **{"length": 60} | fields))

    def refused(self, step, node: str) -> None:
        for attempt in range(step.action.attempts):
            self._connection(step.probe, node, step.action.ip, step.action.port, attempt)

    def _connection(self, role: str, node: str, ip: str, port: int, attempt: int) -> None:
        self.conns += 1
        src, key, t = self.probes[role].ip, 40000 + self.conns, T0 + 20 * self.conns
        backend = BACKENDS[attempt % 2] if ip == CLUSTER_IP else next(b for b in BACKENDS if b.ip == ip)
        there = backend.node_name
        points = [(role, "eth0"), (node, self.veth[src])]
        points += [(node, "eth0"), (there, "eth0")] if there != node else []
        points.append((there, self.veth[backend.ip]))
        kind = self.who(node, backend.ip, port)
        seen = points if kind == "pod" else points[:-1]
        for i, (where, interface) in enumerate(seen):
            dst, dport = (ip, port) if i < 2 else (backend.ip, 8080)
            self.add(where, interface, t + i * 0.001, proto="tcp", src=src, dst=dst, sport=key, dport=dport,
                     tcp_flags="S")
        for j, i in enumerate(range(len(seen) - 1, -1, -1)):
            where, interface = seen[i]
            dst, dport = (ip, port) if i < 2 else (backend.ip, 8080)
            if kind == "pod":
                self.add(where, interface, t + 0.05 + j * 0.001, proto="tcp", src=dst, dst=src, sport=dport,
                         dport=key, tcp_flags="RA")
            else:
                sender = dst if i < 2 and ip == CLUSTER_IP else f"{CIDR[there]}.1"
                self.add(where, interface, t + 0.05 + j * 0.001, proto="icmp", src=sender, dst=src, length=88,
                         icmp_type=3, icmp_code=3, quoted=Quoted("tcp", src, dst, key, dport))

    def captures(self) -> tuple[Capture, ...]:
        pods = tuple(Capture(f"probe {r.role}", r.node, r.role, tuple(self.packets.get(r.role, ())))
                     for r in self.probes.values())
        return pods + tuple(Capture(n, n, None, tuple(self.packets.get(n, ())), self._inventory(n)) for n in NODE_IP)

    def _inventory(self, node: str) -> Inventory:
        local = [ip for ip, n in self._pods() if n == node]
        interfaces = [Interface(1, "eth0", InterfaceKind.DEVICE, 1500, addresses=(f"{NODE_IP[node]}/24",)),
                      Interface(2, "cni0", InterfaceKind.BRIDGE, 1500, addresses=(f"{CIDR[node]}.1/24",))]
        interfaces += [Interface(10 + i, self.veth[ip], InterfaceKind.VETH, 1500) for i, ip in enumerate(local)]
        other = next(n for n in NODE_IP if n != node)
        routes = [Route("default", "eth0", "192.168.0.254"), Route(f"{CIDR[other]}.0/24", "eth0", NODE_IP[other])]
        routes += [Route(f"{ip}/32", self.veth[ip]) for ip in local]
        return Inventory(tuple(interfaces), tuple(routes))


def run_captured(f: Facts, cluster: Cluster, who: Callable[[str, str, int], str]):
    """Like run(), with captures showing who refused each refused connection."""
    p = plan.build(f)
    observations = cluster.observe(p, f)
    wire = Wire(p, who)
    nodes = {x.role: x.node for x in p.probes}
    for step in p.steps:
        obs = next(o for o in observations if o.step_key == step.key)
        if isinstance(step.action, TcpConnect) and all(r.outcome is TcpOutcome.REFUSED for r in obs.result):
            wire.refused(step, nodes[step.probe])
    return judge(Evidence(f, p, observations, wire.captures(), wire.probes), CATALOG)


def checks(report) -> dict:
    return {c.check_id: c for layer in report.layers for c in layer.checks}


REFUSED_TO_BACKENDS = Cluster(tcp=lambda n, ip, port: TcpOutcome.REFUSED if port in (80, 8080) else TcpOutcome.CONNECTED)


def test_a_reset_from_the_pod_itself_is_nothing_listening():
    report = run_captured(facts(), replace(REFUSED_TO_BACKENDS, listeners={}), lambda n, ip, port: "pod")
    pod_check = checks(report)["ND-POD-001"]
    assert (pod_check.state, pod_check.cause) == (State.FAIL, "refused")
    assert any("TCP reset from the pod itself" in line for line in pod_check.evidence), pod_check.evidence
    assert checks(report)["ND-NODE-002"].state is State.PASS  # the pod answered: the path works


def test_a_kube_router_reject_is_the_policy_not_the_pod_nor_kube_proxy():
    """Every flow denied by a NetworkPolicy and rejected by the backend's node (kube-router):
    the policy is the cause; the Pod IP check names the rejecting node; ND-NODE-003 does not
    claim the Service IP fails from a node where the pod IPs work."""
    report = run_captured(facts(policy=denied_flows()), REFUSED_TO_BACKENDS, lambda n, ip, port: "reject")
    d = report.diagnosis
    assert (d.layer, d.check_id, d.cause) == (Layer.POLICY, "ND-POL-001", "ingress-denied")
    found = checks(report)
    assert found["ND-POD-001"].cause == "rejected" and found["ND-POD-001"].explained_by
    assert found["ND-POD-001"].params["node"] in ("node-a", "node-b")
    assert found["ND-NODE-003"].state is State.SKIP and found["ND-NODE-002"].state is State.SKIP


def test_a_reject_the_policies_do_not_explain_is_a_firewall_at_the_named_node():
    """No NetworkPolicy known to deny it, yet node-b rejects everything bound for its pod: the
    Pod IP, Service IP and cross-node checks name node-b's reject; nothing blames kube-proxy."""
    who = lambda n, ip, port: "reject" if ip == "10.244.1.5" else "pod"  # noqa: E731
    cluster = Cluster(tcp=lambda n, ip, port: TcpOutcome.REFUSED if ip in ("10.244.1.5", CLUSTER_IP)
                      else TcpOutcome.CONNECTED)
    report = run_captured(facts(), cluster, who)
    found = checks(report)
    pod_check = found["ND-POD-001"]
    assert (pod_check.cause, pod_check.params["node"], pod_check.params["pods"]) == ("rejected", "node-b", "web-1")
    assert pod_check.params["sender"] == "10.244.1.1" and pod_check.params["icmp"] == "ICMP port unreachable"
    assert any("rejected by node-b: ICMP port unreachable from 10.244.1.1" in line for line in pod_check.evidence)
    assert found["ND-NODE-002"].cause == "rejected" and found["ND-NODE-002"].params["nodes"] == "node-b"
    assert found["ND-NODE-002"].explained_by == "ND-POD-001:rejected"
    assert found["ND-NODE-003"].state is State.PASS and "pod IPs fail too" in found["ND-NODE-003"].message
    assert found["ND-SVC-001"].cause != "node-only"
    d = report.diagnosis
    assert (d.layer, d.check_id, d.cause) == (Layer.POD, "ND-POD-001", "rejected")
    assert "node-b" in d.headline and "10.244.1.1" in d.headline


def test_a_rejected_service_ip_names_the_node_not_kube_proxy():
    """Only the ClusterIP's connections are rejected (after the DNAT, at the backends' nodes): the
    Service IP check says so instead of 'Service proxying is broken'."""
    cluster = Cluster(tcp=lambda n, ip, port: TcpOutcome.REFUSED if ip == CLUSTER_IP else TcpOutcome.CONNECTED)
    report = run_captured(facts(), cluster, lambda n, ip, port: "reject")
    svc = checks(report)["ND-SVC-001"]
    assert svc.cause == "rejected" and svc.params["node"] in ("node-a", "node-b"), (svc.cause, svc.message)


def test_without_capture_a_refusal_proves_no_path():
    report = run(facts(), Cluster(tcp=lambda n, ip, port: TcpOutcome.REFUSED if node_of(ip) not in (n, None)
                                  else TcpOutcome.CONNECTED))
    found = checks(report)
    assert found["ND-NODE-002"].cause == "refused-unknown", found["ND-NODE-002"].message
    assert any("who refused is unknown" in line for line in found["ND-NODE-002"].evidence)
