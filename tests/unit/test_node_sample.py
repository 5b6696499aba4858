"""The bounded plan: which nodes get probes and why, what caps them, which nodes cannot host one,
which pairs get DF pings; and the bounded node reads behind it (check.nodes) against a fake
cluster that answers selectors as the API server does."""

from __future__ import annotations

from dataclasses import replace

import pytest

import fakenodes
from netdoctor.check import nodes as node_reads
from netdoctor.check.nodes import NodeChoice
from netdoctor.check.plan import Options, build, sample
from netdoctor.cluster.objects import EndpointAddress, EndpointSlice, Node, Pod, Service, ServicePort, Taint
from netdoctor.errors import UsageError
from netdoctor.model import CaptureMode, Facts, Kind, NodeReason, Ping, ProbePurpose, Ref

ZONE, POOL = "topology.kubernetes.io/zone", "karpenter.sh/nodepool"
SERVICE = Service("demo", "web", "NodePort", "10.96.0.20", False, (ServicePort("http", "TCP", 80, 8080, 30080),),
                  (("app", "web"),))
VIRTUAL = Taint("virtual-kubelet.io/provider", "azure", "NoSchedule")


def node(name, zone="z1", pool="p1", ready=True, taints=(), kernel="6.1", runtime="containerd://2.1", **more):
    labels = tuple(sorted({ZONE: zone, POOL: pool, **more}.items()))
    return Node(name, f"192.168.{hash(name) % 200}.{len(name)}", ready, taints, labels, kernel=kernel, runtime=runtime)


def pod(name, node_name, ns="demo", labels=(("app", "web"),), ready=True):
    return Pod(ns, name, f"uid-{name}", labels, node_name, f"10.244.{len(name)}.{hash(name) % 250}", None, "Running",
               ready)


def facts(nodes, backends, dns=(), source="n1") -> Facts:
    eps = tuple(EndpointAddress(p.ip, True, True, False, p.name, p.node_name) for p in backends)
    return Facts(namespace="demo", target=Ref(Kind.SERVICE, "web"), source=f"probe on {source}", source_node=source,
                 source_pod=None, source_namespace="demo", port=80, target_port=8080, service=SERVICE,
                 service_port=SERVICE.ports[0], backends=tuple(backends),
                 slices=(EndpointSlice("demo", "web-x", "web", "IPv4", (), eps),), nodes=tuple(nodes),
                 dns_backends=tuple(dns), policy=())


def reasons(chosen):
    return {n.name: [(w.reason, w.detail) for w in n.why] for n in chosen}


def test_each_sampled_node_says_why():
    nodes = [node("n1"), node("n2"), node("n3"), node("n4", zone="z2"), node("n5", zone="z2")]
    f = facts(nodes, [pod("web-1", "n2"), pod("web-2", "n2")], dns=[pod("coredns-1", "n3", "kube-system")])
    got = reasons(sample(f))
    assert got == {
        "n1": [(NodeReason.SOURCE, "")],
        "n2": [(NodeReason.BACKEND, "web-1, web-2")],
        "n3": [(NodeReason.DNS, "coredns-1")],
        "n4": [(NodeReason.GROUP, "zone z2, pool p1, kernel 6.1, containerd://2.1")],
    }  # n5 is n4's kind: one of them stands for both


def test_a_node_with_several_roles_lists_them_all():
    f = facts([node("n1"), node("n2")], [pod("web-1", "n1")], dns=[pod("coredns-1", "n1", "kube-system")])
    assert reasons(sample(f))["n1"] == [(NodeReason.SOURCE, ""), (NodeReason.BACKEND, "web-1"),
                                        (NodeReason.DNS, "coredns-1")]


def test_kernel_and_runtime_make_a_kind_of_their_own():
    nodes = [node("n1"), node("n2", kernel="5.15"), node("n3", runtime="cri-o://1.30"), node("n4")]
    assert set(reasons(sample(facts(nodes, [pod("web-1", "n1")])))) == {"n1", "n2", "n3"}


def test_max_nodes_caps_the_nodes_that_get_a_probe_in_the_order_of_their_reasons():
    nodes = [node(f"n{i}", zone=f"z{i}") for i in range(1, 21)]
    f = facts(nodes, [pod("web-1", "n5"), pod("web-2", "n6")])
    chosen = sample(f, NodeChoice(max_nodes=4))
    assert [n.name for n in chosen] == ["n1", "n5", "n6", "n2"]
    assert [n.name for n in sample(f, NodeChoice(max_nodes=1))] == ["n1"]


def test_backend_nodes_are_capped_and_distinct():
    nodes = [node(f"n{i}") for i in range(1, 11)]
    backends = [pod(f"web-{i}", f"n{2 + i % 5}") for i in range(20)]
    chosen = sample(facts(nodes, backends), NodeChoice(max_nodes=50))
    backend_nodes = [n.name for n in chosen if any(w.reason is NodeReason.BACKEND for w in n.why)]
    assert len(backend_nodes) == node_reads.MAX_BACKEND_NODES == len(set(backend_nodes))


@pytest.mark.parametrize("taint, excluded", [
    (VIRTUAL, "taint virtual-kubelet.io/provider=azure:NoSchedule"),
    (Taint("node-role.kubernetes.io/control-plane", "", "NoSchedule"), "taint node-role.kubernetes.io/control-plane:NoSchedule"),
    (Taint("dedicated", "gpu", "NoExecute"), "taint dedicated=gpu:NoExecute"),
    (Taint("spot", "true", "PreferNoSchedule"), None),
])
def test_a_backend_node_whose_taints_the_probes_do_not_tolerate_is_shown_not_probed(taint, excluded):
    f = facts([node("n1"), node("v1", taints=(taint,), type="virtual-kubelet")], [pod("web-1", "v1")])
    chosen = {n.name: n for n in sample(f)}
    assert chosen["v1"].excluded == excluded
    the_plan = build(f)
    assert ("v1" in {p.node for p in the_plan.probes}) is (excluded is None)
    if excluded:
        assert any(f"v1 ({excluded})" in note for note in the_plan.notes)


def test_notready_and_cordoned_nodes_get_no_probe_and_no_nodeport():
    cordoned = replace(node("n3"), unschedulable=True)
    f = facts([node("n1"), node("n2", ready=False), cordoned], [pod("web-1", "n2"), pod("web-2", "n3")])
    chosen = {n.name: n.excluded for n in sample(f)}
    assert chosen == {"n1": None, "n2": "NotReady", "n3": "cordoned (unschedulable)"}
    the_plan = build(f)
    assert {p.node for p in the_plan.probes} == {"n1"}
    assert [s.key for s in the_plan.steps if s.key.startswith("nodeport:")] == ["nodeport:n1"]


def test_nodes_all_and_named_nodes_are_not_capped():
    nodes = [node(f"n{i}") for i in range(1, 13)]
    f = facts(nodes, [pod("web-1", "n2")])
    assert len(sample(f, NodeChoice(all=True))) == 12
    assert all(any(w.reason is NodeReason.ALL for w in n.why) for n in sample(f, NodeChoice(all=True)))
    named = reasons(sample(f, NodeChoice(names=("n7", "n9"))))
    assert named == {"n1": [(NodeReason.SOURCE, "")], "n2": [(NodeReason.BACKEND, "web-1")],
                     "n7": [(NodeReason.REQUESTED, "")], "n9": [(NodeReason.REQUESTED, "")]}


def test_mtu_pings_only_on_the_pairs_the_traffic_crosses():
    f = facts([node("n1"), node("n2"), node("n3", zone="z2")], [pod("web-1", "n2")])
    the_plan = build(f, Options(capture=CaptureMode.OFF))
    pings = {(s.probe, s.action.size, s.action.to_probe or s.action.ip) for s in the_plan.steps
             if isinstance(s.action, Ping)}
    web = f.backends[0].ip
    df = {(probe, target) for probe, size, target in pings if size > 56}
    # n1 and n3 reach web-1 across nodes, and the probe on web-1's node; n2 is web-1's own node
    assert df == {("source", web), ("source", "node-n2"), ("node-n3", web), ("node-n3", "node-n2")}
    assert ("node-n2", 56, web) in pings  # a small ping where it stays on the node


def test_probes_and_steps_do_not_grow_with_the_cluster():
    def plan_for(count):
        nodes = [node("n1"), node("n2")] + [node(f"x{i}", zone=f"z{i % 3}", pool=f"p{i % 4}") for i in range(count)]
        f = facts(nodes, [pod("web-1", "n2"), pod("web-2", "x1")], dns=[pod("coredns-1", "x2", "kube-system")])
        return build(f, Options(capture=CaptureMode.AUTO))

    small, big = plan_for(10), plan_for(5000)
    assert len(big.probes) == len(small.probes) <= 12
    assert len(big.steps) == len(small.steps) <= 150
    assert sum(p.purpose is ProbePurpose.TRAFFIC for p in big.probes) <= node_reads.DEFAULT_MAX_NODES


# --- the reads behind the sample --------------------------------------------------------------


class Nodes:
    """Our cluster wrapper's node reads over a list of nodes; every list is logged."""

    def __init__(self, nodes):
        self.all, self.log, self.gets = list(nodes), [], []

    def node(self, name):
        self.gets.append(name)
        return fakenodes.named(self.all, name)

    def nodes(self, label_selector=None, field_selector=None, first=None):
        return fakenodes.select(self.all, label_selector, field_selector, first, self.log)

    def list_metadata(self, kind, namespace=None, label_selector=None, field_selector=None, first=None):
        return [{"kind": kind, "metadata": {"name": n.name}} for n in self.all][:first]


def cluster(count):
    real = [node("n1", zone="a"), node("n2", zone="a"), node("n3", zone="b", pool="gpu")]
    ghosts = [node(f"g{i}", zone=f"z{i % 3}", pool=f"p{i % 4}", taints=(VIRTUAL,), type="virtual-kubelet")
              for i in range(count)]
    return Nodes(ghosts[: count // 2] + real + ghosts[count // 2:])


def test_the_default_reads_are_a_few_one_node_lists_whatever_the_cluster_size():
    small, big = cluster(10), cluster(5000)
    found = {len(c.all): node_reads.read(c, NodeChoice(), ["n2"], {"n2"}) for c in (small, big)}
    assert [n.name for n in found[len(big.all)]] == [n.name for n in found[len(small.all)]]
    assert {n.name for n in found[len(big.all)]} == {"n1", "n2", "n3"}  # zone b, pool gpu found; ghosts never
    assert len(big.log) == len(small.log) <= len(node_reads.DIVERSITY_KEYS) + 3
    assert all(first == 1 and "type!=virtual-kubelet" in labels for labels, _, first in big.log)
    assert big.gets == ["n2"]


def test_a_tainted_answer_is_kept_shown_and_skipped_by_name():
    nodes = Nodes([node("n1"), node("t1", taints=(Taint("dedicated", "db", "NoSchedule"),)), node("n2")])
    found = node_reads.read(nodes, NodeChoice(), ["n1"], {"n1"})
    assert [n.name for n in found] == ["n1", "t1", "n2"]  # t1 is read, then skipped by name for n2
    assert "metadata.name!=t1" in nodes.log[1][1]


def test_nodes_all_lists_every_node_and_named_nodes_are_read_by_name():
    nodes = cluster(20)
    assert len(node_reads.read(nodes, NodeChoice(all=True), [], set())) == 23
    nodes = cluster(20)
    assert [n.name for n in node_reads.read(nodes, NodeChoice(names=("n3",)), ["n1"], set())] == ["n1", "n3"]
    assert nodes.log == []


def test_an_unknown_node_name_is_refused_with_the_names_there_are():
    with pytest.raises(UsageError, match=r"no node named 'n9' \(nodes: n1, n2\)"):
        node_reads.read(Nodes([node("n1"), node("n2")]), NodeChoice(names=("n9",)), [], set())


def test_a_node_sampled_for_its_dns_pods_only_gets_a_capture_probe_not_a_traffic_probe():
    f = facts([node("n1"), node("n2"), node("n3")], [pod("web-1", "n2")], dns=[pod("coredns-1", "n3", "kube-system")])
    probes = {(p.node, p.purpose) for p in build(f, Options(capture=CaptureMode.AUTO)).probes}
    assert (("n3", ProbePurpose.NODE_CAPTURE) in probes) and (("n3", ProbePurpose.TRAFFIC) not in probes)
    assert ("n2", ProbePurpose.TRAFFIC) in probes


def test_the_cross_node_layer_aims_at_one_backend_per_backend_node_whatever_the_replicas():
    def node_steps(replicas):
        backends = [pod(f"web-{i}", f"n{2 + i % 2}", ready=i != 0) for i in range(replicas)]
        the_plan = build(facts([node("n1"), node("n2"), node("n3")], backends), Options(capture=CaptureMode.OFF))
        return [s for s in the_plan.steps if s.check_id in ("ND-NODE-002", "ND-NODE-004")], the_plan

    few, _ = node_steps(2)
    many, the_plan = node_steps(60)
    assert len(many) == len(few)
    aimed = {s.title.split(" → ")[1] for s in many if s.check_id == "ND-NODE-002"}
    assert aimed == {"web-1 (n3)", "web-2 (n2)"}  # web-0 is not ready: web-2 stands for n2
    assert sum(s.check_id == "ND-POD-001" for s in the_plan.steps) == 60  # the source tries each one


def test_the_default_source_node_does_not_depend_on_the_order_the_nodes_were_read_in():
    from netdoctor.check.resolve import _default_node

    backends = (pod("web-1", "n2"), pod("web-2", "n1"))
    assert _default_node((node("n2"), node("n1")), backends) == _default_node((node("n1"), node("n2")), backends) == "n1"
    assert _default_node((node("n2"), node("n3"), node("n1")), backends) == "n3"
