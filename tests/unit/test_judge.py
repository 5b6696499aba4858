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
    DnsQuery, Evidence, Facts, InspectListeners, Kind, Layer, NearMiss, Observation, Ping, PolicyFlow,
    ReadResolvConf, Ref, State, TcpConnect,
)
from netdoctor.cluster.objects import EndpointAddress, EndpointSlice, Node, Pod, Service, ServicePort
from netdoctor.observations import (
    BindScope, DnsOutcome, DnsResult, Listener, ListenerStatus, ListenerTable, PingOutcome, PingResult,
    ResolvConf, TcpOutcome, TcpResult,
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
    "targetPort wrong": (
        facts(), Cluster(tcp=lambda n, ip, port: TcpOutcome.REFUSED if port == 8080 else TcpOutcome.CONNECTED,
                         listeners={}),
        Layer.POD, "ND-POD-001", "refused"),
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
