"""Real-world Service shapes are no faults (issue 11 items 2-4): each backend probed on its own port
number, UDP ports probed with UDP (a DNS query where the port serves DNS) and never passed on silence,
listeners found without a shell in the app's image, and the traffic policies' expectations per node
(internalTrafficPolicy Local, session affinity, publishNotReadyAddresses, ExternalName, a frozen
rollout, a LoadBalancer waiting for its load balancer, a Service without a selector).

Plans come from the planner; observations from test_judge's simulated cluster, or a function of
each step; captures from test_hops' scenes."""

from __future__ import annotations

from dataclasses import dataclass, replace

from netdoctor.check import plan
from netdoctor.check.resolve import _named_by_slices
from netdoctor.cluster.objects import ContainerPort, EndpointAddress, EndpointSlice, Service, ServicePort
from netdoctor.judge import coverage
from netdoctor.judge.hops import paths
from netdoctor.judge.verdict import judge
from netdoctor.model import (
    CaptureMode, DnsQuery, Evidence, Expect, InspectListeners, Layer, Observation, State, Step, TcpConnect, UdpExchange,
)
from netdoctor.observations import (
    DnsOutcome, DnsResult, ExecError, ExecErrorKind, ExecResult, ListenerStatus, ListenerTable, TcpOutcome, TcpResult,
)
from netdoctor.probe import runner

import test_hops
from test_judge import BACKENDS, CATALOG, CLUSTER_IP, SERVICE, Cluster, checks, facts, pod, run, run_captured, slices
from test_service_coverage import connect, service, svc001


def steps(f, check_id: str, **options) -> list[Step]:
    return [s for s in plan.build(f, plan.Options(**options)).steps if s.check_id == check_id]


# --- real ports: each backend on its own number, the declaring container first ------------------

MIGRATING = (  # `http` is 8080 on web-1 and 8081 on web-2, declared by each pod's second container
    replace(BACKENDS[0], containers=("log", "web"), container_ports=(ContainerPort("http", 8080, "TCP", "web"),)),
    replace(BACKENDS[1], containers=("log", "web"), container_ports=(ContainerPort("http", 8081, "TCP", "web"),)),
)
NAMED = replace(SERVICE, ports=(ServicePort("http", "TCP", 80, "http"), ServicePort("admin", "TCP", 9090, "admin")))


def migrating(**changes):
    return facts(service=NAMED, service_port=NAMED.ports[0], backends=MIGRATING,
                 backend_ports=(("web-1", 8080), ("web-2", 8081)), **changes)


def test_each_backend_is_probed_and_inspected_on_its_own_port_in_the_container_declaring_it():
    f = migrating()
    assert {s.action.ip: s.action.port for s in steps(f, "ND-POD-001")} == {"10.244.1.5": 8080, "10.244.0.7": 8081}
    assert {s.action.port for s in steps(f, "ND-NODE-002")} == {8080, 8081}
    listen = [s.action for s in steps(f, "ND-TGT-003")]
    assert [(a.pod, a.port, a.protocol, a.containers) for a in listen] == [
        ("web-1", 8080, "TCP", ("web", "log")), ("web-2", 8081, "TCP", ("web", "log"))]
    assert "Service web has 2 ports: checking 80/TCP (http); for the other use --port admin" in plan.build(f).notes


def test_a_named_port_mapped_differently_per_pod_passes_when_each_listens_on_its_own():
    report = run(migrating(), Cluster())
    found = checks(report)
    assert report.diagnosis.state is State.PASS, report.diagnosis.headline
    assert found["ND-TGT-003"].message == "2 backend(s) listen on 8080, 8081"
    assert found["ND-POD-001"].message == "2/2 backends connect on port 8080, 8081"


# --- UDP: a datagram, a DNS query where the port serves DNS; silence is no pass ------------------

STATSD = replace(SERVICE, ports=(ServicePort("statsd", "UDP", 8125, 8125),))
KUBE_DNS = replace(SERVICE, ports=(ServicePort("dns", "UDP", 53, 53), ServicePort("dns-tcp", "TCP", 53, 53)))


def udp(svc: Service, index: int = 0, **changes):
    sp = svc.ports[index]
    return facts(service=svc, service_port=sp, port=sp.port, target_port=sp.target_port, **changes)


def test_a_udp_port_is_probed_with_udp_and_a_dns_port_with_a_dns_query():
    for svc, name in ((STATSD, None), (KUBE_DNS, "web.demo.svc.cluster.local.")):
        f = udp(svc)
        probing = [s.action for check in ("ND-POD-001", "ND-SVC-001", "ND-NODE-002", "ND-NODE-003")
                   for s in steps(f, check)]
        assert probing and all(isinstance(a, UdpExchange) and a.dns_name == name for a in probing)
        assert {s.action.protocol for s in steps(f, "ND-TGT-003")} == {"UDP"}
    tcp = udp(KUBE_DNS, 1)
    assert all(type(s.action) is TcpConnect for s in steps(tcp, "ND-POD-001"))


@dataclass
class Udp(Cluster):
    """Every UDP exchange ends as `udp(node, ip)` says."""

    udp: object = lambda node, ip: TcpOutcome.CONNECTED

    def _result(self, action, node, f):
        if isinstance(action, UdpExchange):
            return tuple(TcpResult(action.ip, action.port, self.udp(node, action.ip), 0.01)
                         for _ in range(action.attempts))
        return super()._result(action, node, f)


def test_a_udp_service_that_answers_passes():
    report = run(udp(STATSD), Udp())
    assert report.diagnosis.state is State.PASS
    assert checks(report)["ND-POD-001"].message == "2/2 backends answer on port 8125"
    assert any(line.endswith(": answered") for line in checks(report)["ND-POD-001"].evidence)


def test_a_silent_udp_service_is_open_filtered_never_a_pass():
    report = run(udp(STATSD), Udp(udp=lambda node, ip: TcpOutcome.NO_REPLY))
    found = checks(report)
    assert (found["ND-POD-001"].state, found["ND-POD-001"].cause) == (State.WARN, "open-filtered")
    assert (found["ND-SVC-001"].state, found["ND-SVC-001"].cause) == (State.WARN, "open-filtered")
    assert found["ND-NODE-002"].state is State.SKIP and found["ND-NODE-003"].state is State.SKIP
    assert not any(c.state is State.PASS for c in found.values() if c.check_id in (
        "ND-POD-001", "ND-SVC-001", "ND-NODE-002", "ND-NODE-003"))
    assert report.diagnosis.state is State.WARN


def test_silence_from_a_udp_port_that_answers_elsewhere_is_a_loss():
    nodes = {p.ip: p.node_name for p in BACKENDS}
    far = lambda node, ip: TcpOutcome.NO_REPLY if nodes.get(ip) not in (node, None) else TcpOutcome.CONNECTED  # noqa: E731
    found = checks(run(udp(STATSD), Udp(udp=far)))
    assert (found["ND-NODE-002"].state, found["ND-NODE-002"].cause) == (State.FAIL, "cross-node")


def test_a_dns_exchange_is_told_from_the_dns_layers_queries_to_the_same_server_by_its_id():
    s = test_hops.Scene()
    s.flow(test_hops.local(test_hops.DNS_VETH), t=test_hops.T0, proto="udp", key=40001, dst=test_hops.DNSPOD,
           dport=53, dns_id=111)  # the DNS layer's own query
    s.flow(test_hops.local(test_hops.DNS_VETH), t=test_hops.T0 + 0.1, proto="udp", key=40002, dst=test_hops.DNSPOD,
           dport=53, dns_id=222)
    step = Step("pod:coredns-1", "ND-POD-001", Layer.POD, "source", UdpExchange(test_hops.DNSPOD, 53, dns_name="x."))
    ours = Observation(step.key, (TcpResult(test_hops.DNSPOD, 53, TcpOutcome.CONNECTED, 0.01, "DNS NOERROR", 222),))
    [path] = paths(test_hops.evidence(s, [step], [ours]))
    assert (path.connections, path.cause) == (1, "delivered") and path.flow.startswith(f"{test_hops.SRC}:40002 ")


# --- listeners without a shell: another container, else the packets, else SKIP ------------------

@dataclass
class Distroless(Cluster):
    """No container of any backend can run `cat`."""

    def _result(self, action, node, f):
        if isinstance(action, InspectListeners):
            return ListenerTable(ListenerStatus.NO_TOOL, detail=f"no container of {action.pod} can run cat")
        return super()._result(action, node, f)


def test_a_distroless_backend_that_accepts_the_sources_connection_listens():
    found = checks(run(facts(), Distroless()))
    assert found["ND-TGT-003"].state is State.PASS
    assert ("web-1: socket table unreadable (no container of web-1 can run cat); the source's connection to "
            "10.244.1.5:8080 was answered: it listens") in found["ND-TGT-003"].evidence


def test_a_distroless_backend_whose_own_reset_refused_the_source_does_not_listen():
    refused = replace(Distroless(), tcp=lambda n, ip, port: TcpOutcome.REFUSED if ip == "10.244.1.5"
                      else TcpOutcome.CONNECTED)
    found = checks(run_captured(facts(), refused, lambda n, ip, port: "pod"))
    assert (found["ND-TGT-003"].state, found["ND-TGT-003"].cause) == (State.FAIL, "not-listening")
    assert found["ND-TGT-003"].params == {"pod": "web-1", "listening": "unknown: its socket table is unreadable"}


def test_when_neither_the_socket_table_nor_the_packets_tell_the_listener_check_is_skipped_not_failed():
    silent = replace(Distroless(), tcp=lambda n, ip, port: TcpOutcome.TIMEOUT if ip == "10.244.1.5"
                     else TcpOutcome.CONNECTED)
    found = checks(run(facts(backends=BACKENDS[:1], slices=slices(BACKENDS[:1])), silent))
    assert found["ND-TGT-003"].state is State.SKIP
    assert found["ND-TGT-003"].message.startswith("cannot tell whether web-1 listen(s) on 8080")


def test_the_socket_table_is_read_in_the_next_container_when_the_first_has_no_cat():
    class Kube:
        def __init__(self):
            self.containers = []

        def exec(self, namespace, pod, command, container=None, timeout=None):
            self.containers.append(container)
            if container == "app":  # distroless: the runtime finds no `cat`
                return ExecResult(None, b"", b"", ExecError(ExecErrorKind.MISSING_BINARY, "not found", "cat"))
            return ExecResult(0, b"  sl  local_address rem_address   st\n   0: 00000000:1F90 00000000:0000 0A\n", b"")

    kube, f = Kube(), facts(backends=BACKENDS[:1], slices=slices(BACKENDS[:1]))
    step = Step("listen:web-1", "ND-TGT-003", Layer.TARGET, None, InspectListeners("web-1", 8080, "TCP", ("app", "shell")))
    [obs] = runner.observe_without_probes(kube, plan.Plan((), (step,)), f, runner.RunOptions(), "no probes")
    assert kube.containers == ["app", "shell"]
    assert (obs.result.status, obs.result.container, obs.result.on_port(8080)[0].address) == (
        ListenerStatus.OK, "shell", "0.0.0.0")


# --- who gets traffic: a frozen rollout, publishNotReadyAddresses -------------------------------

ROLLOUT = (BACKENDS[0], replace(BACKENDS[1], ready=False))  # web-2: the new pod that never turns Ready


@dataclass
class Deaf(Cluster):
    """web-2 listens on nothing."""

    def _result(self, action, node, f):
        if isinstance(action, InspectListeners) and action.pod == "web-2":
            return ListenerTable(ListenerStatus.OK)
        return super()._result(action, node, f)


def rollout_slices():
    return (EndpointSlice("demo", "web-abc", "web", "IPv4", (), (
        EndpointAddress(ROLLOUT[0].ip, True, True, False, "web-1", "node-b"),
        EndpointAddress(ROLLOUT[1].ip, False, False, False, "web-2", "node-a"))),)


def test_a_pod_of_a_frozen_rollout_that_gets_no_traffic_need_not_listen_nor_answer():
    f = facts(backends=ROLLOUT, slices=rollout_slices())
    report = run(f, Deaf(tcp=lambda n, ip, port: TcpOutcome.REFUSED if ip == ROLLOUT[1].ip else TcpOutcome.CONNECTED))
    found = checks(report)
    assert found["ND-TGT-003"].state is State.PASS
    assert "web-2: port 8080 not listened on (gets no traffic: need not listen)" in found["ND-TGT-003"].evidence
    assert (found["ND-POD-001"].state, found["ND-POD-001"].message) == (State.PASS, "1/1 backends connect on port 8080")
    assert (f"source → web-2 {ROLLOUT[1].ip}:8080: refused (who refused is unknown: no capture shows it) "
            "(gets no traffic: need not answer)") in found["ND-POD-001"].evidence
    assert found["ND-NODE-002"].state is State.PASS
    assert (found["ND-TGT-002"].state, report.diagnosis.state) == (State.WARN, State.WARN)
    serving = run(f, Deaf(tcp=lambda n, ip, port: TcpOutcome.REFUSED if ip == ROLLOUT[0].ip else TcpOutcome.CONNECTED))
    assert checks(serving)["ND-POD-001"].state is State.FAIL  # the pod that does get traffic must answer


def test_publish_not_ready_addresses_makes_a_not_ready_pod_a_served_backend():
    published = replace(SERVICE, publish_not_ready_addresses=True)
    endpoints = tuple(EndpointAddress(p.ip, True, p.ready, False, p.name, p.node_name) for p in ROLLOUT)
    f = facts(service=published, backends=ROLLOUT, slices=(EndpointSlice("demo", "w", "web", "IPv4", (), endpoints),))
    assert len(steps(f, "ND-POD-001")) == 2 and len(plan.ready_backends(f)) == 2
    found = checks(run(f, Cluster()))
    assert found["ND-TGT-002"].state is State.PASS and "published" in found["ND-TGT-002"].message


# --- internalTrafficPolicy Local: expected to drop where no endpoint is, and checked for it ------

LOCAL = replace(SERVICE, internal_traffic_policy="Local")
ON_B = (BACKENDS[0],)  # web-1 on node-b; the source is on node-a


def local(**changes):
    return facts(service=LOCAL, backends=ON_B, slices=slices(ON_B), **changes)


def test_the_plan_expects_a_drop_from_a_node_without_a_local_endpoint_and_an_answer_elsewhere():
    f = local()
    [svc] = steps(f, "ND-SVC-001")
    assert svc.expect is Expect.DROPPED and svc.action.until_covered == 0
    assert {s.probe: s.expect for s in steps(f, "ND-NODE-003")} == {"source": Expect.DROPPED,
                                                                   "node-node-b": Expect.SUCCEED}


def dropping_on_a(n, ip, port):
    return TcpOutcome.TIMEOUT if (n, ip) == ("node-a", CLUSTER_IP) else TcpOutcome.CONNECTED


def test_a_drop_where_the_policy_means_it_passes_and_says_so():
    report = run(local(), Cluster(tcp=dropping_on_a))
    found = checks(report)
    assert report.diagnosis.state is State.PASS, report.diagnosis.headline
    assert found["ND-SVC-001"].message.startswith("dropped from node-a, as internalTrafficPolicy Local means")
    assert found["ND-NODE-003"].message == ("the Service IP works from 1/1 node(s); drops, as internalTrafficPolicy "
                                            "Local means, from node-a (no ready endpoint there)")


def test_a_node_without_a_local_endpoint_that_answers_does_not_honour_the_policy():
    found = checks(run(local(), Cluster()))
    assert (found["ND-SVC-001"].state, found["ND-SVC-001"].cause) == (State.WARN, "local-not-dropped")
    assert (found["ND-NODE-003"].state, found["ND-NODE-003"].cause) == (State.WARN, "local-not-dropped")


def test_where_the_policy_expects_an_answer_a_drop_is_still_a_fault():
    found = checks(run(local(), Cluster(tcp=lambda n, ip, port: TcpOutcome.TIMEOUT if ip == CLUSTER_IP
                                        else TcpOutcome.CONNECTED)))
    assert (found["ND-NODE-003"].state, found["ND-NODE-003"].cause) == (State.FAIL, "everywhere")


# --- session affinity: one client, one backend ---------------------------------------------------

def test_with_session_affinity_one_backend_taking_every_connection_is_no_fault():
    s = test_hops.Scene()
    outcomes = [connect(s, i, test_hops.WEB1) for i in range(16)]
    ev, step = service(s, outcomes, service=replace(test_hops.SERVICE, session_affinity="ClientIP"))
    result = svc001(ev)
    assert result.state is State.PASS, result.message
    assert "session affinity ClientIP: one client, one backend (web-1 ×16)" in result.message
    assert coverage.uncovered(ev, step) == ()
    plain = svc001(service(s, outcomes)[0])
    assert (plain.state, plain.cause) == (State.FAIL, "backend-unreached")  # the same packets without affinity


def test_with_session_affinity_the_plan_adds_no_coverage_round():
    f = facts(service=replace(SERVICE, session_affinity="ClientIP"))
    for mode in (CaptureMode.AUTO, CaptureMode.OFF):
        [svc] = steps(f, "ND-SVC-001", capture=mode)
        assert svc.action.until_covered == 0 and svc.action.attempts == 6


# --- ExternalName, LoadBalancer, no selector ----------------------------------------------------

ALIAS = Service("demo", "alias", "ExternalName", None, False, (), (), external_name="web.other.svc.cluster.local")


def test_an_external_name_service_is_a_cname_checked_in_dns_and_nothing_else():
    f = facts(target=replace(facts().target, name="alias"), service=ALIAS, service_port=None, port=None,
              target_port=None, backends=(), slices=())
    p = plan.build(f)
    assert {s.action.rdtype for s in p.steps if isinstance(s.action, DnsQuery)} == {"CNAME"}
    assert not [s for s in p.steps if isinstance(s.action, (TcpConnect, InspectListeners))]
    cname = Cluster(dns=lambda server, name, attempt: DnsResult(name, "CNAME", server, DnsOutcome.ANSWER, attempt,
                                                                ("web.other.svc.cluster.local.",)))
    report = run(f, cname)
    found = checks(report)
    assert report.diagnosis.state is State.PASS, report.diagnosis.headline
    assert found["ND-TGT-001"].message == "ExternalName Service: an alias of web.other.svc.cluster.local"
    assert found["ND-DNS-003"].state is State.PASS and found["ND-EP-001"].state is State.SKIP
    stale = checks(run(f, replace(cname, dns=lambda server, name, attempt: DnsResult(
        name, "CNAME", server, DnsOutcome.ANSWER, attempt, ("elsewhere.example.",)))))
    assert stale["ND-DNS-003"].cause == "stale"


def test_a_load_balancer_without_one_and_a_service_without_a_selector_are_no_warnings():
    lb = checks(run(facts(service=replace(SERVICE, type="LoadBalancer")), Cluster()))["ND-TGT-001"]
    assert lb.state is State.PASS and any(line.startswith("load balancer: none yet") for line in lb.evidence)
    manual = checks(run(facts(service=replace(SERVICE, selector=())), Cluster()))["ND-TGT-001"]
    assert manual.state is State.PASS
    assert "no selector: its endpoints are managed by hand (1 EndpointSlice(s))" in manual.evidence


def test_a_service_without_a_selector_has_the_pods_its_endpoint_slices_point_at():
    class Kube:
        def endpoint_slices(self, namespace, service):
            return list(slices(BACKENDS[:1]))

        def pods(self, namespace, selector=None):
            return [*BACKENDS, pod("other", "10.244.0.9", "node-a")]

    assert [p.name for p in _named_by_slices(Kube(), "demo", replace(SERVICE, selector=()))] == ["web-1"]


def test_every_step_of_these_shapes_is_judged_without_an_error():
    shapes = [migrating(), udp(STATSD), udp(KUBE_DNS), local(), facts(backends=ROLLOUT, slices=rollout_slices())]
    for f in shapes:
        p = plan.build(f)
        report = judge(Evidence(f, p, Udp().observe(p, f)), CATALOG)
        assert not [c for layer in report.layers for c in layer.checks if c.state is State.ERROR], f.service
