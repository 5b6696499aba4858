"""The grouped matrix: ports, scope, totals, and properties (hypothesis) tying it to engine.decide."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from policy_world import base, namespace, netpol, pod

from netdoctor.errors import UsageError
from netdoctor.policy.engine import DirectionState, decide
from netdoctor.policy.matrix import PortQuery, compute_matrix, parse_port
from netdoctor.policy.model import Protocol, world_from_objects


@pytest.mark.parametrize(
    "text, query",
    [
        ("TCP/80", PortQuery(Protocol.TCP, 80)),
        ("80", PortQuery(Protocol.TCP, 80)),
        ("udp/53", PortQuery(Protocol.UDP, 53)),
        ("SCTP/9000", PortQuery(Protocol.SCTP, 9000)),
        ("TCP/http", PortQuery(Protocol.TCP, "http")),
    ],
)
def test_parse_port(text, query):
    assert parse_port(text) == query


@pytest.mark.parametrize("text", ["ICMP/1", "TCP/0", "TCP/70000", "TCP/", "a/b/c", ""])
def test_parse_port_rejects(text):
    with pytest.raises(UsageError):
        parse_port(text)


def summary(matrix) -> set[tuple]:
    return {(c.source.key, c.destination.key, c.outcome.protocol.value, c.outcome.port, c.outcome.allowed) for c in matrix.cells()}


def test_ports_default_to_each_destinations_container_ports():
    world = world_from_objects(base())
    cells = summary(compute_matrix(world))
    assert {(d, proto, port) for _, d, proto, port, _ in cells} == {
        ("a/web", "TCP", 80),
        ("a/api", "TCP", 8080),
        ("a/api", "UDP", 53),
        ("a/api", "SCTP", 9000),
    }
    assert len(cells) == 5 * 4  # five sources, four (destination, port)s


def test_port_queries_apply_to_every_destination_and_named_ones_resolve_per_pod():
    world = world_from_objects(base())
    matrix = compute_matrix(world, ports=[parse_port("TCP/443"), parse_port("TCP/http")])
    by_destination = {}
    for _, d, proto, port, _ in summary(matrix):
        by_destination.setdefault(d, set()).add((proto, port))
    assert by_destination["a/web"] == {("TCP", 443), ("TCP", 80)}
    assert by_destination["a/api"] == {("TCP", 443), ("TCP", 8080)}
    assert by_destination["b/client"] == {("TCP", 443)}


def test_pods_sharing_namespace_labels_and_ports_form_one_group():
    objects = [pod(f"a/web-{i}", {"app": "web"}, f"10.0.0.{i + 1}", (("http", 80, "TCP"),)) for i in range(5)]
    objects += [pod("a/db", {"app": "db"}, "10.0.0.99", (("pg", 5432, "TCP"),))]
    objects += [netpol("a/db", {"podSelector": {"matchLabels": {"app": "db"}}, "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}]})]
    matrix = compute_matrix(world_from_objects(objects))
    assert len(set(matrix.groups)) == 2
    assert matrix.totals() == (35, 36)  # all but db -> db


def test_ip_blocks_split_groups_whose_addresses_differ():
    objects = [pod("a/x", {"app": "x"}, "10.0.0.1", (("h", 80, "TCP"),)), pod("a/y", {"app": "x"}, "10.0.1.1", (("h", 80, "TCP"),))]
    objects += [netpol("a/p", {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.1.0/24"}}]}]})]
    matrix = compute_matrix(world_from_objects(objects))
    assert len(set(matrix.groups)) == 2
    assert {(s, d) for s, d, _, _, allowed in summary(matrix) if allowed} == {("a/y", "a/x"), ("a/y", "a/y")}


def test_scope_restricts_both_ends_and_problems_are_carried():
    world = world_from_objects(base() + [netpol("a/bad", {"podSelector": {}, "ingress": [{"from": [{}]}]})])
    matrix = compute_matrix(world, [p for p in world.pods if p.namespace == "a"])
    assert {c.source.namespace for c in matrix.cells()} | {c.destination.namespace for c in matrix.cells()} == {"a"}
    assert [p.policy for p in matrix.problems] == ["a/bad"]


# --- properties ---------------------------------------------------------------------------------

LABELS = st.dictionaries(st.sampled_from(["app", "tier"]), st.sampled_from(["web", "db", "x"]), max_size=2)
NAMESPACES = ["a", "b"]
PORTS = [("http", 80, "TCP"), ("dns", 53, "UDP"), ("alt", 8080, "TCP"), ("sig", 80, "SCTP")]
QUERIES = ["TCP/80", "UDP/53", "TCP/8080", "SCTP/80", "TCP/8000"]


def selector():
    labels = st.builds(lambda d: {"matchLabels": d}, LABELS)
    expression = st.fixed_dictionaries(
        {"key": st.sampled_from(["app", "tier", "team"]), "operator": st.sampled_from(["In", "NotIn"]), "values": st.lists(st.sampled_from(["web", "db", "y"]), min_size=1, max_size=2)}
    ) | st.fixed_dictionaries({"key": st.sampled_from(["app", "tier", "team"]), "operator": st.sampled_from(["Exists", "DoesNotExist"])})
    return labels | st.builds(lambda e: {"matchExpressions": e}, st.lists(expression, min_size=1, max_size=2))


def peer():
    selectors = st.fixed_dictionaries({}, optional={"podSelector": selector(), "namespaceSelector": selector()}).filter(bool)
    blocks = st.sampled_from(
        [{"ipBlock": {"cidr": "10.0.0.0/8"}}, {"ipBlock": {"cidr": "10.0.0.0/24", "except": ["10.0.0.0/30"]}}, {"ipBlock": {"cidr": "10.0.1.0/24"}}]
    )
    return selectors | blocks


def port_entry():
    protocol = st.sampled_from(["TCP", "UDP", "SCTP"])
    numbered = st.fixed_dictionaries({"port": st.sampled_from([53, 80, 8080])}, optional={"protocol": protocol})
    ranged = st.fixed_dictionaries({"port": st.just(53), "endPort": st.sampled_from([80, 8080])}, optional={"protocol": protocol})
    named = st.fixed_dictionaries({"port": st.sampled_from(["http", "dns", "alt", "sig"])}, optional={"protocol": protocol})
    return numbered | ranged | named | st.fixed_dictionaries({"protocol": protocol})


def rule(peers_field):
    return st.fixed_dictionaries({}, optional={peers_field: st.lists(peer(), max_size=2), "ports": st.lists(port_entry(), max_size=2)})


@st.composite
def policy(draw, name):
    spec = {"podSelector": draw(selector() | st.just({}))}
    for section, field in (("ingress", "from"), ("egress", "to")):
        rules = draw(st.none() | st.lists(rule(field), max_size=2))
        if rules is not None:
            spec[section] = rules
    types = draw(st.none() | st.sampled_from([["Ingress"], ["Egress"], ["Ingress", "Egress"]]))
    if types:
        spec["policyTypes"] = types
    return netpol(f"{draw(st.sampled_from(NAMESPACES))}/{name}", spec)


@st.composite
def worlds(draw):
    objects = [namespace("a", team="y"), namespace("b")]
    for i in range(draw(st.integers(1, 5))):
        ip = draw(st.sampled_from([None, f"10.0.0.{i + 1}", f"10.0.1.{i + 1}"]))
        ports = tuple(draw(st.lists(st.sampled_from(PORTS), max_size=2, unique_by=lambda p: p[0])))
        objects.append(pod(f"{draw(st.sampled_from(NAMESPACES))}/p{i}", draw(LABELS), ip, ports))
    objects += [draw(policy(f"np{i}")) for i in range(draw(st.integers(0, 3)))]
    return objects


FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def all_flows(world):
    queries = [parse_port(q) for q in QUERIES]
    for source in world.pods:
        for destination in world.pods:
            for query in queries:
                yield source, destination, query.protocol, query.port


@FAST
@given(worlds())
def test_matrix_agrees_with_decide_cell_by_cell(objects):
    world = world_from_objects(objects)
    matrix = compute_matrix(world, ports=[parse_port(q) for q in QUERIES])
    cells = {(c.source.key, c.destination.key, c.outcome.protocol, c.outcome.port): c.outcome for c in matrix.cells()}
    for source, destination, protocol, port in all_flows(world):
        verdict = decide(world, source, destination, protocol, port)
        outcome = cells[(source.key, destination.key, protocol, port)]
        assert (outcome.egress, outcome.ingress, outcome.allowed) == (verdict.egress.state, verdict.ingress.state, verdict.allowed)


@FAST
@given(worlds(), policy("added"))
def test_adding_a_policy_never_removes_a_flow_an_isolated_pod_allowed(objects, added):
    before = world_from_objects(objects)
    after = world_from_objects(objects + [added])
    for source, destination, protocol, port in all_flows(before):
        old = decide(before, source, destination, protocol, port)
        new = decide(after, source, destination, protocol, port)
        for old_side, new_side in ((old.egress, new.egress), (old.ingress, new.ingress)):
            if old_side.state is DirectionState.ALLOWED:
                assert new_side.state is DirectionState.ALLOWED


@FAST
@given(worlds(), policy("inert"), st.sampled_from(["selector", "namespace"]))
def test_a_policy_selecting_no_pod_changes_nothing(objects, inert, how):
    if how == "selector":
        inert["spec"]["podSelector"] = {"matchLabels": {"selects": "nothing"}}
    else:
        inert["metadata"]["namespace"] = "empty"
    ports = [parse_port(q) for q in QUERIES]
    before = summary(compute_matrix(world_from_objects(objects), ports=ports))
    after = summary(compute_matrix(world_from_objects(objects + [inert]), ports=ports))
    assert before == after
