"""Errors are not evidence: an attempt that errored (exec failed, API stalled, probe died) never
counts as success or failure and never leaves a denominator; a check whose claim the rest cannot
establish is ERROR and says what is missing. Plans come from the planner; every step is answered by
a healthy cluster except those a test makes error (the step itself, or some of its tries)."""

from __future__ import annotations

from dataclasses import replace

from netdoctor import catalog
from netdoctor.check import plan
from netdoctor.cluster.objects import EndpointAddress, EndpointSlice, Node, Pod, Service, ServicePort
from netdoctor.judge.verdict import judge
from netdoctor.model import (
    DnsQuery, Evidence, Facts, InspectListeners, Kind, Layer, Observation, Ping, ReadResolvConf, Ref, State,
    TcpConnect,
)
from netdoctor.observations import (
    BindScope, DnsOutcome, DnsResult, Listener, ListenerStatus, ListenerTable, PingOutcome, PingResult, ResolvConf,
    TcpOutcome, TcpResult,
)

CLUSTER_IP, DNS_IP = "10.96.0.20", "10.96.0.10"
STALLED = "the API server at https://127.0.0.1:6443 did not answer within 30s (starting exec in pod demo/p)"


def pod(name, ip, node, ns="demo"):
    return Pod(ns, name, f"uid-{name}", (("app", "web"),), node, ip, None, "Running", True)


WEB_1, WEB_2 = pod("web-1", "10.244.1.5", "node-b"), pod("web-2", "10.244.0.7", "node-a")
NODE_IPS = {"node-a": "192.168.0.1", "node-b": "192.168.0.2"}


def facts(node_port: int | None = None) -> Facts:
    port = ServicePort("http", "TCP", 80, 8080, node_port)
    service = Service("demo", "web", "NodePort" if node_port else "ClusterIP", CLUSTER_IP, False, (port,), (("app", "web"),))
    endpoints = tuple(EndpointAddress(p.ip, True, True, False, p.name, p.node_name) for p in (WEB_1, WEB_2))
    return Facts(
        namespace="demo", target=Ref(Kind.SERVICE, "web"), source="probe on node-a", source_node="node-a",
        source_pod=None, source_namespace="demo", port=80, target_port=8080, service=service, service_port=port,
        backends=(WEB_1, WEB_2), slices=(EndpointSlice("demo", "web-abc", "web", "IPv4", (), endpoints),),
        nodes=tuple(Node(name, ip, True) for name, ip in NODE_IPS.items()),
        dns_service=Service("kube-system", "kube-dns", "ClusterIP", DNS_IP, False, (), ()),
        dns_backends=(pod("coredns-1", "10.244.0.2", "node-a", "kube-system"),), policy=(),
    )


def healthy(action, node):
    """What a healthy cluster answers to a step run from `node`."""
    if isinstance(action, TcpConnect):
        return tuple(TcpResult(action.ip, action.port, TcpOutcome.CONNECTED, 0.01) for _ in range(action.attempts))
    if isinstance(action, DnsQuery):
        server = action.server or DNS_IP
        return tuple(DnsResult(action.name, "A", server, DnsOutcome.ANSWER, i, (CLUSTER_IP,))
                     for i in range(1, action.attempts + 1))
    if isinstance(action, ReadResolvConf):
        return ResolvConf((DNS_IP,), ("demo.svc.cluster.local", "svc.cluster.local", "cluster.local"), 5)
    if isinstance(action, Ping):
        return PingResult(action.ip or "10.244.1.9", action.size, PingOutcome.REPLY)
    if isinstance(action, InspectListeners):
        return ListenerTable(ListenerStatus.OK, (Listener("0.0.0.0", action.port, BindScope.ANY),))
    raise AssertionError(action)


def check(f: Facts, answer=lambda step, node, result: result):
    """Judge a run where `answer(step, node, healthy result)` gives each step's result, or an
    Observation (a step that errored)."""
    p = plan.build(f)
    nodes = {probe.role: probe.node for probe in p.probes}
    observations = []
    for step in p.steps:
        got = answer(step, nodes.get(step.probe), healthy(step.action, nodes.get(step.probe)))
        observations.append(got if isinstance(got, Observation) else Observation(step.key, got))
    report = judge(Evidence(f, p, tuple(observations)), catalog.load())
    return report, {c.check_id: c for layer in report.layers for c in layer.checks}


def stalled(step) -> Observation:
    return Observation(step.key, None, STALLED)


def errored_try(action) -> TcpResult:
    return TcpResult(action.ip, action.port, TcpOutcome.ERROR, None, "tcp did not finish within 5s")


def cross_node(step, node) -> bool:
    return step.check_id == "ND-NODE-002" and {WEB_1.ip: WEB_1, WEB_2.ip: WEB_2}[step.action.ip].node_name != node


def test_the_healthy_run_passes():
    report, checks = check(facts())
    assert report.state is State.PASS, [(c.check_id, c.state, c.message) for c in checks.values() if c.state is not State.PASS]


def test_cross_node_attempts_that_errored_are_not_a_pass():
    """The API stalled while the cross-node steps ran: the same-node paths alone prove nothing
    about the overlay."""
    report, checks = check(facts(), lambda step, node, result: stalled(step) if cross_node(step, node) else result)
    node = checks["ND-NODE-002"]
    assert node.state is State.ERROR
    assert node.message == ("2 of 4 attempts errored: no evidence for node-a → web-1 (node-b), "
                            "node-b → web-2 (node-a)")
    assert any(STALLED in line for line in node.evidence)
    assert report.state is State.ERROR and next(x for x in report.layers if x.layer is Layer.NODE).state is State.ERROR


def test_a_failure_still_fails_and_errored_attempts_stay_in_the_denominator():
    def answer(step, node, result):
        if step.check_id == "ND-POD-001":
            if step.action.ip == WEB_1.ip:
                return tuple(replace(r, outcome=TcpOutcome.TIMEOUT) for r in result)
            return stalled(step)
        return result

    _, checks = check(facts(), answer)
    pod_ip = checks["ND-POD-001"]
    assert pod_ip.state is State.FAIL and pod_ip.cause == "timeout"
    assert pod_ip.message == "1/2 backends timeout on port 8080"  # web-2 errored: still counted


def test_a_backend_whose_attempt_errored_has_no_evidence():
    _, checks = check(facts(), lambda step, node, result:
                      stalled(step) if step.check_id == "ND-POD-001" and step.action.ip == WEB_2.ip else result)
    assert checks["ND-POD-001"].state is State.ERROR
    assert checks["ND-POD-001"].message == "1 of 2 attempts errored: no evidence for web-2"


def test_tries_that_errored_are_neither_success_nor_failure():
    def some_errored(step, node, result):
        if step.check_id != "ND-SVC-001":
            return result
        return tuple(errored_try(step.action) if i < 2 else r for i, r in enumerate(result))

    _, checks = check(facts(), some_errored)
    service = checks["ND-SVC-001"]
    tries = next(s for s in plan.build(facts()).steps if s.check_id == "ND-SVC-001").action.attempts
    assert service.state is State.ERROR and service.cause is None  # not the "partial" failure
    assert service.message.startswith(f"2 of {tries} connections errored (the other {tries - 2} connected)")

    def one_timed_out(step, node, result):
        result = some_errored(step, node, result)
        if step.check_id != "ND-SVC-001":
            return result
        return tuple(replace(r, outcome=TcpOutcome.TIMEOUT) if i == 2 else r for i, r in enumerate(result))

    _, checks = check(facts(), one_timed_out)
    assert (checks["ND-SVC-001"].state, checks["ND-SVC-001"].cause) == (State.FAIL, "partial")
    assert checks["ND-SVC-001"].message == f"{tries - 3}/{tries} connections succeeded"


def test_a_node_whose_service_attempt_errored_is_not_blamed_on_kube_proxy():
    _, checks = check(facts(), lambda step, node, result:
                      stalled(step) if step.check_id == "ND-NODE-003" and node == "node-b" else result)
    assert checks["ND-NODE-003"].state is State.ERROR
    assert checks["ND-NODE-003"].message == "1 of 2 attempts errored: no evidence for node-b"


def test_a_nodeport_that_errored_is_not_a_failing_nodeport():
    _, checks = check(facts(node_port=30080), lambda step, node, result:
                      stalled(step) if step.check_id == "ND-SVC-002" and step.action.ip == NODE_IPS["node-b"] else result)
    assert checks["ND-SVC-002"].state is State.ERROR and checks["ND-SVC-002"].cause is None
    assert checks["ND-SVC-002"].message == "1 of 2 attempts errored: no evidence for 192.168.0.2"


def test_pings_that_errored_prove_neither_mtu_nor_icmp_filtering():
    def answer(step, node, result):
        if step.check_id == "ND-NODE-004" and node == "node-b":
            return replace(result, outcome=PingOutcome.ERROR, detail="ping did not finish within 5s")
        return result

    _, checks = check(facts(), answer)
    assert checks["ND-NODE-004"].state is State.ERROR
    assert checks["ND-NODE-004"].message == ("pings errored on 3 of 6 path(s): no evidence for node-b → probe on node-a, "
                                             "node-b → web-1 (node-b), node-b → web-2 (node-a)")
    assert checks["ND-NODE-005"].state is State.ERROR  # not "ICMP blocked": the small ping errored
    _, checks = check(facts(), lambda step, node, result: stalled(step) if step.check_id == "ND-NODE-004" else result)
    assert checks["ND-NODE-004"].state is checks["ND-NODE-005"].state is State.ERROR  # not SKIP


def test_a_dns_lookup_that_errored_is_not_a_resolved_name():
    lookups = [s for s in plan.build(facts()).steps if s.check_id == "ND-DNS-002"]
    _, checks = check(facts(), lambda step, node, result: stalled(step) if step.key == lookups[-1].key else result)
    assert checks["ND-DNS-002"].state is State.ERROR
    assert checks["ND-DNS-002"].message == f"1 of {len(lookups)} lookups errored: no evidence for {lookups[-1].action.name}"


def test_a_socket_table_that_errored_is_not_a_listening_backend():
    """Neither its socket table nor the source's connection to its pod IP says (both errored)."""
    _, checks = check(facts(), lambda step, node, result:
                      stalled(step) if step.key in ("listen:web-1", "pod:web-1") else result)
    assert checks["ND-TGT-003"].state is State.ERROR
    assert checks["ND-TGT-003"].message == "1 of 2 backends' socket tables could not be read: no evidence for web-1"
