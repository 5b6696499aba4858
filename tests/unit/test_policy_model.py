"""Building the policy world from API-shaped dicts, and validating policies as the API server does."""

from __future__ import annotations

import ipaddress

import pytest
from policy_world import namespace, netpol, pod

from netdoctor.errors import InputFileError
from netdoctor.policy.model import (
    NAMESPACE_NAME_LABEL,
    ContainerPort,
    Direction,
    ProblemKind,
    Protocol,
    world_from_objects,
)


def test_namespaces_carry_the_automatic_name_label_declared_or_not():
    world = world_from_objects([namespace("a", team="x", **{NAMESPACE_NAME_LABEL: "wrong"}), pod("b/p", {})])
    assert dict(world.namespaces["a"].labels) == {"team": "x", NAMESPACE_NAME_LABEL: "a"}
    assert world.namespaces["a"].declared
    assert dict(world.namespaces["b"].labels) == {NAMESPACE_NAME_LABEL: "b"}
    assert not world.namespaces["b"].declared


def test_pods_get_labels_ips_and_ports_with_tcp_default():
    obj = pod("a/p", {"app": "x", "v": 1}, ports=(("http", 80, "TCP"),))
    obj["spec"]["containers"].append({"name": "side", "ports": [{"containerPort": 53, "protocol": "UDP"}]})
    obj["status"] = {"podIPs": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]}
    (p,) = world_from_objects([obj]).pods
    assert (p.key, dict(p.labels)) == ("a/p", {"app": "x", "v": "1"})
    assert p.ips == (ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("fd00::1"))
    assert p.ports == (ContainerPort(80, Protocol.TCP, "http"), ContainerPort(53, Protocol.UDP, None))


def test_missing_namespace_means_default_and_finished_pods_are_skipped():
    done = pod("a/done", {})
    done["status"] = {"phase": "Succeeded"}
    plain = {"kind": "Pod", "metadata": {"name": "p"}}
    assert [p.key for p in world_from_objects([done, plain]).pods] == ["default/p"]


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"])
def test_workload_templates_become_one_pod_each(kind):
    template = {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80, "name": "http"}]}]}}
    workload = {"kind": kind, "metadata": {"name": "web", "namespace": "a"}, "spec": {"template": template}}
    world = world_from_objects([workload, pod("a/web", {"app": "other"}), {"kind": "Service", "metadata": {"name": "s"}}])
    by_key = {p.key: p for p in world.pods}
    assert set(by_key) == {"a/web", f"a/web.{kind.lower()}"}
    templated = by_key[f"a/web.{kind.lower()}"]
    assert (dict(templated.labels), templated.origin, templated.ips) == ({"app": "web"}, f"{kind}/web", ())
    assert templated.named_port("http").number == 80


def test_objects_without_a_name_or_with_bad_ports_are_input_errors():
    with pytest.raises(InputFileError, match="no metadata.name"):
        world_from_objects([{"kind": "Pod", "metadata": {}}])
    with pytest.raises(InputFileError, match="invalid containerPort"):
        world_from_objects([pod("a/p", {}, ports=(("x", 80, "ICMP"),))])


@pytest.mark.parametrize(
    "spec, types",
    [
        ({"podSelector": {}}, {Direction.INGRESS}),
        ({"podSelector": {}, "ingress": [{}]}, {Direction.INGRESS}),
        ({"podSelector": {}, "egress": [{}]}, {Direction.INGRESS, Direction.EGRESS}),
        ({"podSelector": {}, "egress": []}, {Direction.INGRESS}),
        ({"podSelector": {}, "policyTypes": ["Egress"]}, {Direction.EGRESS}),
        ({"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}, {Direction.INGRESS, Direction.EGRESS}),
    ],
)
def test_policy_types_defaults(spec, types):
    (policy,) = world_from_objects([netpol("a/p", spec)]).policies
    assert policy.types == types


INVALID = {
    "endPort with a named port": ({"ports": [{"port": "http", "endPort": 90}]}, "spec.ingress[0].ports[0].endPort"),
    "endPort without port": ({"ports": [{"endPort": 90}]}, "spec.ingress[0].ports[0].endPort"),
    "endPort below port": ({"ports": [{"port": 90, "endPort": 80}]}, "spec.ingress[0].ports[0].endPort"),
    "endPort out of range": ({"ports": [{"port": 90, "endPort": 70000}]}, "spec.ingress[0].ports[0].endPort"),
    "port 0": ({"ports": [{"port": 0}]}, "spec.ingress[0].ports[0].port"),
    "port name with capitals": ({"ports": [{"port": "HTTP"}]}, "spec.ingress[0].ports[0].port"),
    "port name of digits only": ({"ports": [{"port": "8080"}]}, "spec.ingress[0].ports[0].port"),
    "port name too long": ({"ports": [{"port": "a-very-long-port-name"}]}, "spec.ingress[0].ports[0].port"),
    "unknown protocol": ({"ports": [{"protocol": "ICMP"}]}, "spec.ingress[0].ports[0].protocol"),
    "lower-case protocol": ({"ports": [{"protocol": "tcp"}]}, "spec.ingress[0].ports[0].protocol"),
    "empty peer": ({"from": [{}]}, "spec.ingress[0].from[0]"),
    "ipBlock with a selector": ({"from": [{"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}}]}, "spec.ingress[0].from[0]"),
    "bad cidr": ({"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}, "spec.ingress[0].from[0].ipBlock.cidr"),
    "except outside cidr": ({"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["11.0.0.0/16"]}}]}, "spec.ingress[0].from[0].ipBlock.except[0]"),
    "except equal to cidr": ({"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.0.0.0/8"]}}]}, "spec.ingress[0].from[0].ipBlock.except[0]"),
    "unknown operator": (
        {"from": [{"podSelector": {"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]}}]},
        "spec.ingress[0].from[0].podSelector",
    ),
    "In without values": (
        {"from": [{"namespaceSelector": {"matchExpressions": [{"key": "a", "operator": "In"}]}}]},
        "spec.ingress[0].from[0].namespaceSelector",
    ),
    "Exists with values": (
        {"from": [{"podSelector": {"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]}}]},
        "spec.ingress[0].from[0].podSelector",
    ),
}


@pytest.mark.parametrize("rule, field", INVALID.values(), ids=INVALID.keys())
def test_invalid_policies_are_reported_and_left_out(rule, field):
    world = world_from_objects([netpol("a/bad", {"podSelector": {}, "ingress": [rule]}), netpol("a/good", {"podSelector": {}})])
    assert [p.key for p in world.policies] == ["a/good"]
    (problem,) = world.problems
    assert (problem.policy, problem.field, problem.kind) == ("a/bad", field, ProblemKind.INVALID)
    assert str(problem).startswith(f"NetworkPolicy a/bad: ignored: {field}: ")


@pytest.mark.parametrize(
    "spec, field",
    [
        ({"podSelector": {}, "policyTypes": ["Inbound"]}, "spec.policyTypes"),
        ({"podSelector": {}, "policyTypes": ["Ingress", "Ingress"]}, "spec.policyTypes"),
        ({"podSelector": {"matchExpressions": [{"key": "a", "operator": "Nope"}]}}, "spec.podSelector"),
        ({"podSelector": {}, "egress": {"to": []}}, "spec.egress"),
    ],
)
def test_invalid_policy_level_fields(spec, field):
    world = world_from_objects([netpol("a/bad", spec)])
    assert world.policies == () and [p.field for p in world.problems] == [field]


def test_rules_for_a_direction_missing_from_policy_types_are_flagged_as_ignored():
    world = world_from_objects([netpol("a/p", {"podSelector": {}, "policyTypes": ["Ingress"], "egress": [{}]})])
    (policy,) = world.policies
    assert policy.types == {Direction.INGRESS}
    assert [(p.field, p.kind) for p in world.problems] == [("spec.egress", ProblemKind.IGNORED)]


def test_valid_edge_cases_are_accepted():
    rules = [
        {"ports": [{"port": 1, "endPort": 65535}, {"port": "h-2"}, {"protocol": "SCTP"}]},
        {"from": [{"ipBlock": {"cidr": "fd00::/64", "except": ["fd00::/96"]}}, {"podSelector": {}, "namespaceSelector": {}}]},
    ]
    world = world_from_objects([netpol("a/p", {"podSelector": {}, "ingress": rules})])
    assert world.problems == () and len(world.policies[0].ingress) == 2
