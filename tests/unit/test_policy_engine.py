"""NetworkPolicy semantics, rule by rule, as the Kubernetes API reference states them."""

from __future__ import annotations

import pytest
from policy_world import base, flow, netpol, pod

from netdoctor.policy.engine import DirectionState, MissKind
from netdoctor.policy.model import Direction

ALL = DirectionState.NOT_ISOLATED
OK = DirectionState.ALLOWED
NO = DirectionState.DENIED


def ingress_to_api(*rules, **extra) -> dict:
    spec = {"podSelector": {"matchLabels": {"app": "api"}}, **extra}
    if rules != (None,):
        spec["ingress"] = list(rules)
    return netpol("a/to-api", spec)


def egress_from_web(*rules) -> dict:
    return netpol("a/from-web", {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"], "egress": list(rules)})


# (extra objects, source, destination, port, egress state, ingress state)
CASES = {
    "no policy: all allowed": ([], "a/web", "a/api", "TCP/8080", ALL, ALL),
    "ingress: [] isolates and denies": ([ingress_to_api()], "a/web", "a/api", "TCP/8080", ALL, NO),
    "ingress missing with policyTypes Ingress denies": (
        [ingress_to_api(None, policyTypes=["Ingress"])], "a/web", "a/api", "TCP/8080", ALL, NO),
    "ingress: [{}] allows all": ([ingress_to_api({})], "b/client", "a/api", "UDP/53", ALL, OK),
    "from: [] allows every peer": ([ingress_to_api({"from": []})], "b/client", "a/api", "TCP/8080", ALL, OK),
    "podSelector alone: same namespace": (
        [ingress_to_api({"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]})], "a/web", "a/api", "TCP/8080", ALL, OK),
    "podSelector alone: not another namespace": (
        [ingress_to_api({"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]})], "b/web", "a/api", "TCP/8080", ALL, NO),
    "namespaceSelector alone: every pod there": (
        [ingress_to_api({"from": [{"namespaceSelector": {"matchLabels": {"team": "y"}}}]})], "b/client", "a/api", "TCP/8080", ALL, OK),
    "namespaceSelector alone: not other namespaces": (
        [ingress_to_api({"from": [{"namespaceSelector": {"matchLabels": {"team": "y"}}}]})], "a/web", "a/api", "TCP/8080", ALL, NO),
    "both in one peer (AND): both match": (
        [ingress_to_api({"from": [{"namespaceSelector": {"matchLabels": {"team": "y"}}, "podSelector": {"matchLabels": {"app": "web"}}}]})],
        "b/web", "a/api", "TCP/8080", ALL, OK),
    "both in one peer (AND): only namespace matches": (
        [ingress_to_api({"from": [{"namespaceSelector": {"matchLabels": {"team": "y"}}, "podSelector": {"matchLabels": {"app": "web"}}}]})],
        "b/client", "a/api", "TCP/8080", ALL, NO),
    "both in one peer (AND): only labels match": (
        [ingress_to_api({"from": [{"namespaceSelector": {"matchLabels": {"team": "y"}}, "podSelector": {"matchLabels": {"app": "web"}}}]})],
        "a/web", "a/api", "TCP/8080", ALL, NO),
    "two peers (OR): namespace one": (
        [ingress_to_api({"from": [{"namespaceSelector": {"matchLabels": {"team": "y"}}}, {"podSelector": {"matchLabels": {"app": "web"}}}]})],
        "b/client", "a/api", "TCP/8080", ALL, OK),
    "two peers (OR): pod one": (
        [ingress_to_api({"from": [{"namespaceSelector": {"matchLabels": {"team": "y"}}}, {"podSelector": {"matchLabels": {"app": "web"}}}]})],
        "a/web", "a/api", "TCP/8080", ALL, OK),
    "empty podSelector: every pod of the policy's namespace": (
        [ingress_to_api({"from": [{"podSelector": {}}]})], "a/web", "a/api", "TCP/8080", ALL, OK),
    "empty podSelector: not other namespaces": (
        [ingress_to_api({"from": [{"podSelector": {}}]})], "b/client", "a/api", "TCP/8080", ALL, NO),
    "empty namespaceSelector: every namespace": (
        [ingress_to_api({"from": [{"namespaceSelector": {}}]})], "b/client", "a/api", "TCP/8080", ALL, OK),
    "automatic namespace name label (declared)": (
        [ingress_to_api({"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "b"}}}]})],
        "b/client", "a/api", "TCP/8080", ALL, OK),
    "automatic namespace name label (undeclared namespace)": (
        [ingress_to_api({"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "c"}}}]})],
        "c/job", "a/api", "TCP/8080", ALL, OK),
    "ipBlock contains the pod IP": (
        [ingress_to_api({"from": [{"ipBlock": {"cidr": "10.0.1.0/24"}}]})], "b/client", "a/api", "TCP/8080", ALL, OK),
    "ipBlock does not contain the pod IP": (
        [ingress_to_api({"from": [{"ipBlock": {"cidr": "10.0.1.0/24"}}]})], "a/web", "a/api", "TCP/8080", ALL, NO),
    "ipBlock except": (
        [ingress_to_api({"from": [{"ipBlock": {"cidr": "10.0.1.0/24", "except": ["10.0.1.0/31"]}}]})], "b/client", "a/api", "TCP/8080", ALL, NO),
    "ipBlock outside except": (
        [ingress_to_api({"from": [{"ipBlock": {"cidr": "10.0.1.0/24", "except": ["10.0.1.0/31"]}}]})], "b/web", "a/api", "TCP/8080", ALL, OK),
    "ipBlock cannot match a pod without IP": (
        [ingress_to_api({"from": [{"ipBlock": {"cidr": "0.0.0.0/0"}}]})], "c/job", "a/api", "TCP/8080", ALL, NO),
    "matchExpressions In": (
        [ingress_to_api({"from": [{"namespaceSelector": {}, "podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "x"]}]}}]})],
        "b/web", "a/api", "TCP/8080", ALL, OK),
    "matchExpressions NotIn (absent key matches)": (
        [ingress_to_api({"from": [{"namespaceSelector": {}, "podSelector": {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["fe"]}]}}]})],
        "b/client", "a/api", "TCP/8080", ALL, OK),
    "matchExpressions NotIn (listed value)": (
        [ingress_to_api({"from": [{"namespaceSelector": {}, "podSelector": {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["fe"]}]}}]})],
        "b/web", "a/api", "TCP/8080", ALL, NO),
    "matchExpressions Exists": (
        [ingress_to_api({"from": [{"namespaceSelector": {}, "podSelector": {"matchExpressions": [{"key": "tier", "operator": "Exists"}]}}]})],
        "b/client", "a/api", "TCP/8080", ALL, NO),
    "matchExpressions DoesNotExist": (
        [ingress_to_api({"from": [{"namespaceSelector": {}, "podSelector": {"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}}]})],
        "b/client", "a/api", "TCP/8080", ALL, OK),
    "matchExpressions on the policy's podSelector": (
        [netpol("a/be", {"podSelector": {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["be"]}]}, "ingress": []})],
        "a/web", "a/api", "TCP/8080", ALL, NO),
    "port number matches": ([ingress_to_api({"ports": [{"port": 8080}]})], "a/web", "a/api", "TCP/8080", ALL, OK),
    "port number differs": ([ingress_to_api({"ports": [{"port": 8080}]})], "a/web", "a/api", "TCP/8081", ALL, NO),
    "protocol defaults to TCP": ([ingress_to_api({"ports": [{"port": 53}]})], "a/web", "a/api", "UDP/53", ALL, NO),
    "UDP port": ([ingress_to_api({"ports": [{"port": 53, "protocol": "UDP"}]})], "a/web", "a/api", "UDP/53", ALL, OK),
    "SCTP port": ([ingress_to_api({"ports": [{"port": 9000, "protocol": "SCTP"}]})], "a/web", "a/api", "SCTP/9000", ALL, OK),
    "SCTP rule does not allow TCP": ([ingress_to_api({"ports": [{"port": 9000, "protocol": "SCTP"}]})], "a/web", "a/api", "TCP/9000", ALL, NO),
    "protocol-only rule: any UDP port": ([ingress_to_api({"ports": [{"protocol": "UDP"}]})], "a/web", "a/api", "UDP/5353", ALL, OK),
    "protocol-only rule: not TCP": ([ingress_to_api({"ports": [{"protocol": "UDP"}]})], "a/web", "a/api", "TCP/8080", ALL, NO),
    "endPort range: inside": ([ingress_to_api({"ports": [{"port": 8000, "endPort": 8080}]})], "a/web", "a/api", "TCP/8080", ALL, OK),
    "endPort range: lower bound": ([ingress_to_api({"ports": [{"port": 8000, "endPort": 8080}]})], "a/web", "a/api", "TCP/8000", ALL, OK),
    "endPort range: above": ([ingress_to_api({"ports": [{"port": 8000, "endPort": 8080}]})], "a/web", "a/api", "TCP/8081", ALL, NO),
    "named port resolved on the destination": ([ingress_to_api({"ports": [{"port": "http"}]})], "a/web", "a/api", "TCP/8080", ALL, OK),
    "named port: another number": ([ingress_to_api({"ports": [{"port": "http"}]})], "a/web", "a/api", "TCP/80", ALL, NO),
    "named port: protocol must match the containerPort": (
        [ingress_to_api({"ports": [{"port": "dns", "protocol": "TCP"}]})], "a/web", "a/api", "TCP/53", ALL, NO),
    "named UDP port": ([ingress_to_api({"ports": [{"port": "dns", "protocol": "UDP"}]})], "a/web", "a/api", "UDP/53", ALL, OK),
    "egress named port resolves on the destination, not the source": (
        [egress_from_web({"ports": [{"port": "http"}]})], "a/web", "a/api", "TCP/8080", OK, ALL),
    "egress named port: the source's own number does not count": (
        [egress_from_web({"ports": [{"port": "http"}]})], "a/web", "a/api", "TCP/80", NO, ALL),
    "union of policies: the second allows": (
        [ingress_to_api({"from": [{"podSelector": {"matchLabels": {"app": "nothing"}}}]}),
         netpol("a/second", {"podSelector": {"matchLabels": {"app": "api"}}, "ingress": [{"from": [{"namespaceSelector": {}}]}]})],
        "b/client", "a/api", "TCP/8080", ALL, OK),
    "egress denied, ingress open: denied": ([egress_from_web()], "a/web", "a/api", "TCP/8080", NO, ALL),
    "egress allowed, ingress denied: denied": ([egress_from_web({}), ingress_to_api()], "a/web", "a/api", "TCP/8080", OK, NO),
    "policyTypes default: egress rules add Egress": (
        [netpol("a/e", {"podSelector": {"matchLabels": {"app": "web"}}, "egress": [{"ports": [{"port": 1}]}]})], "a/web", "a/api", "TCP/8080", NO, ALL),
    "policyTypes default: always Ingress": (
        [netpol("a/e", {"podSelector": {"matchLabels": {"app": "api"}}, "egress": [{}]})], "a/web", "a/api", "TCP/8080", ALL, NO),
    "policyTypes default: egress: [] adds no Egress": (
        [netpol("a/e", {"podSelector": {"matchLabels": {"app": "web"}}, "egress": []})], "a/web", "a/api", "TCP/8080", ALL, ALL),
    "policyTypes Egress only: ingress not isolated": (
        [netpol("a/e", {"podSelector": {}, "policyTypes": ["Egress"]})], "b/client", "a/api", "TCP/8080", ALL, ALL),
    "policies never select pods of another namespace": (
        [netpol("b/deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})], "a/web", "a/api", "TCP/8080", ALL, ALL),
    "invalid policy is left out": (
        [ingress_to_api({"ports": [{"port": "http", "endPort": 9000}]})], "a/web", "a/api", "TCP/8080", ALL, ALL),
    "egress to an external address in an ipBlock": (
        [egress_from_web({"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]})], "a/web", "8.8.8.8", "UDP/53", OK, DirectionState.NOT_A_POD),
    "egress to an external address: selectors do not match it": (
        [egress_from_web({"to": [{"namespaceSelector": {}}]})], "a/web", "8.8.8.8", "TCP/443", NO, DirectionState.NOT_A_POD),
    "ipBlock except excludes pod addresses": (
        [egress_from_web({"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}]})], "a/web", "a/api", "TCP/8080", NO, ALL),
}


@pytest.mark.parametrize("extra, source, destination, port, egress, ingress", CASES.values(), ids=CASES.keys())
def test_semantics(extra, source, destination, port, egress, ingress):
    verdict = flow(base() + extra, source, destination, port)
    assert (verdict.egress.state, verdict.ingress.state) == (egress, ingress)
    assert verdict.allowed == (DirectionState.DENIED not in (egress, ingress))


def test_allowing_rules_and_isolating_policies_are_named():
    extra = [
        ingress_to_api({"from": [{"podSelector": {"matchLabels": {"app": "nothing"}}}]}, {"ports": [{"port": 8080}]}),
        netpol("a/second", {"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}),
    ]
    ingress = flow(base() + extra, "a/web", "a/api", "TCP/8080").ingress
    assert ingress.isolating == ("a/to-api", "a/second")
    assert [(r.policy, r.direction, r.index) for r in ingress.allowing] == [
        ("a/to-api", Direction.INGRESS, 1),
        ("a/second", Direction.INGRESS, 0),
    ]


def test_nearest_miss_names_the_label_that_did_not_match():
    extra = [
        ingress_to_api(
            {"from": [{"podSelector": {"matchLabels": {"app": "nothing", "tier": "x"}}}]},
            {"from": [{"podSelector": {"matchLabels": {"app": "frontend"}}}], "ports": [{"port": 8080}]},
        )
    ]
    miss = flow(base() + extra, "a/web", "a/api", "TCP/8080").ingress.nearest_miss
    assert (miss.rule.policy, miss.rule.index) == ("a/to-api", 1)
    assert [(m.kind, m.expected, m.actual) for m in miss.mismatches] == [(MissKind.LABEL, "pod label app=frontend", "app=web")]


@pytest.mark.parametrize(
    "peer, source, kind, actual",
    [
        ({"podSelector": {}}, "b/client", MissKind.NAMESPACE, "namespace b"),
        ({"namespaceSelector": {"matchLabels": {"team": "z"}}}, "b/client", MissKind.NAMESPACE, "namespace b with team=y"),
        ({"namespaceSelector": {"matchLabels": {"env": "prod"}}}, "b/client", MissKind.NAMESPACE, "namespace b with no label env"),
        ({"ipBlock": {"cidr": "192.168.0.0/16"}}, "b/client", MissKind.IP, "10.0.1.1"),
        ({"ipBlock": {"cidr": "192.168.0.0/16"}}, "c/job", MissKind.IP, "no known IP for c/job (pods from files have none)"),
        ({"podSelector": {}}, "192.168.1.1", MissKind.NOT_A_POD, "192.168.1.1, not a pod"),
    ],
)
def test_nearest_miss_names_namespace_and_ip_misses(peer, source, kind, actual):
    miss = flow(base() + [ingress_to_api({"from": [peer]})], source, "a/api", "TCP/8080").ingress.nearest_miss
    assert [(m.kind, m.actual) for m in miss.mismatches] == [(kind, actual)]


@pytest.mark.parametrize(
    "ports, port, expected",
    [
        ([{"port": 8080}], "TCP/80", [(MissKind.PORT, "port 80")]),
        ([{"port": 8000, "endPort": 8010}], "TCP/8080", [(MissKind.PORT, "port 8080")]),
        ([{"port": 53, "protocol": "UDP"}], "TCP/53", [(MissKind.PROTOCOL, "TCP")]),
        ([{"port": "dns"}], "TCP/53", [(MissKind.PROTOCOL, "dns is UDP on a/api")]),
        ([{"port": "metrics"}], "TCP/8080", [(MissKind.PORT, "a/api names no such port (its names: dns, http, sig)")]),
    ],
)
def test_nearest_miss_names_port_and_protocol_misses(ports, port, expected):
    miss = flow(base() + [ingress_to_api({"ports": ports})], "a/web", "a/api", port).ingress.nearest_miss
    assert [(m.kind, m.actual) for m in miss.mismatches] == expected


def test_deny_all_policies_have_no_nearest_miss():
    ingress = flow(base() + [ingress_to_api()], "a/web", "a/api", "TCP/8080").ingress
    assert ingress.state is DirectionState.DENIED
    assert ingress.isolating == ("a/to-api",) and ingress.nearest_miss is None


def test_named_port_on_an_external_destination_cannot_match():
    extra = [egress_from_web({"ports": [{"port": "http"}]})]
    miss = flow(base() + extra, "a/web", "1.2.3.4", "TCP/80").egress.nearest_miss
    assert [m.kind for m in miss.mismatches] == [MissKind.PORT]


def test_dual_stack_pod_matches_an_ipv6_block():
    dual = pod("b/dual", {"app": "dual"})
    dual["status"] = {"podIPs": [{"ip": "10.0.1.9"}, {"ip": "fd00::9"}]}
    extra = [dual, ingress_to_api({"from": [{"ipBlock": {"cidr": "fd00::/64"}}]})]
    assert flow(base() + extra, "b/dual", "a/api", "TCP/8080").allowed
