"""Service ports against container ports (check.resolve): number or name *and* protocol; TCP and UDP
on one port are normal (kube-dns); a named targetPort is resolved per pod."""

from __future__ import annotations

from netdoctor.check.resolve import _target_port, backend_ports
from netdoctor.cluster.objects import ContainerPort, Pod, ServicePort


def pod(name: str, *ports: ContainerPort) -> Pod:
    return Pod("ns", name, f"uid-{name}", (("app", "x"),), "node-1", "10.244.1.5", "172.30.0.1", "Running", True,
               container_ports=ports)


DNS_POD = pod("coredns-1", ContainerPort("dns", 53, "UDP"), ContainerPort("dns-tcp", 53, "TCP"),
              ContainerPort("metrics", 9153, "TCP"))


def test_kube_dns_udp_and_tcp_on_53_is_no_protocol_mismatch():
    for sp in (ServicePort("dns", "UDP", 53, 53), ServicePort("dns-tcp", "TCP", 53, 53),
               ServicePort("metrics", "TCP", 9153, 9153)):
        assert _target_port(None, sp, (DNS_POD,), None) == (sp.target_port, ())


def test_a_port_declared_only_with_the_other_protocol_is_a_mismatch():
    tcp_only = pod("web-1", ContainerPort("http", 8080, "TCP"))
    number, problems = _target_port(None, ServicePort(None, "UDP", 80, 8080), (tcp_only,), None)
    assert number == 8080 and [p.cause for p in problems] == ["protocol-mismatch"]
    assert "web-1" in problems[0].detail and "TCP" in problems[0].detail


def test_an_undeclared_numeric_port_is_no_problem():
    assert _target_port(None, ServicePort(None, "TCP", 80, 8080), (pod("web-1"),), None) == (8080, ())


def test_a_named_target_port_resolves_per_pod_and_by_protocol():
    old = pod("web-old", ContainerPort("http", 8080, "TCP"))
    new = pod("web-new", ContainerPort("http", 9090, "TCP"), ContainerPort("http-udp", 8080, "UDP"))
    sp = ServicePort("web", "TCP", 80, "http")
    assert backend_ports(sp, (old, new)) == (("web-old", 8080), ("web-new", 9090))
    assert _target_port(None, sp, (old, new), None) == (8080, ())


def test_a_named_port_with_the_wrong_protocol_does_not_resolve():
    udp = pod("dns-1", ContainerPort("dns", 53, "UDP"))
    number, problems = _target_port(None, ServicePort("dns", "TCP", 53, "dns"), (udp,), None)
    assert number is None and problems[0].cause == "named-port-unresolved" and "dns=53/UDP" in problems[0].detail


def test_a_named_port_missing_on_some_pods_names_them():
    has = pod("web-1", ContainerPort("http", 8080, "TCP"))
    lacks = pod("web-2", ContainerPort("web", 8080, "TCP"))
    number, problems = _target_port(None, ServicePort(None, "TCP", 80, "http"), (has, lacks), None)
    assert number == 8080 and "web-2" in problems[0].detail and "web-1" not in problems[0].detail
