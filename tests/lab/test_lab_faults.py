"""Each lab fault breaks exactly what it claims, with real packets, and `lab fix` restores it, in
every CNI dialect the lab speaks (flannel, Calico, Cilium; VXLAN or routed).

One lab per dialect. Two client pods carry the frontend's labels (so the shop's policies let
them reach the api), one per node, owned by a ConfigMap so the frontend ReplicaSet never adopts
them. Every probe runs inside the client's own network namespace. A routed lab has no tunnel: its
overlay faults are refused as not existing there.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest
from kubernetes import client

from netdoctor.errors import UsageError
from netdoctor.lab import lifecycle
from netdoctor.lab.state import LabConfig

from labkit import dig, path_mtu, ping, start, tcp, unique_name

pytestmark = pytest.mark.lab


# dialect -> (cni, overlay)
DIALECTS = {"flannel-vxlan": ("flannel", "vxlan"), "flannel-routed": ("flannel", "routed"),
            "calico-vxlan": ("calico", "vxlan"), "calico-routed": ("calico", "routed"),
            "cilium-vxlan": ("cilium", "vxlan")}
OVERLAY_FAULTS = ("overlay-mtu", "overlay-port-blocked")


@dataclass
class Shop:
    lab: object
    clients: dict  # node name -> netns
    client_ips: dict  # node name -> pod IP (not isolated by any policy: pings go there)
    toolbox: str
    overlay: str

    def api_ip(self) -> str:
        v1, _ = self.lab.api()
        return v1.read_namespaced_service("api", "shop").spec.cluster_ip

    def api_pods(self) -> dict:
        """node name -> api pod IP, for the current (Running) api pods."""
        pods = self.lab.pods("shop", "app=api")
        return {p.spec.node_name: p.status.pod_ip for p in pods if p.status.pod_ip and p.status.phase == "Running"}

    def observe(self) -> dict:
        """The vector every fault is judged on."""
        cip, pods = self.api_ip(), self.api_pods()
        one, two = self.clients["node-1"], self.clients["node-2"]
        return {
            "dns-1": dig(one, "api.shop.svc.cluster.local") == [cip],
            "dns-2": dig(two, "api.shop.svc.cluster.local") == [cip],
            "svc-1": all(tcp(one, cip, 80) == "ok" for _ in range(4)),
            "svc-2": all(tcp(two, cip, 80) == "ok" for _ in range(4)),
            "pod-same": tcp(one, pods["node-1"], 8080) == "ok",
            "pod-cross": tcp(one, pods["node-2"], 8080) == "ok",
            "ping-cross": ping(one, self.client_ips["node-2"]),
            "ping-big-cross": ping(one, self.client_ips["node-2"], size=path_mtu(one, self.client_ips["node-2"]) - 28),
            "toolbox-denied": tcp(self.toolbox, pods["node-1"], 8080, timeout=0.5) == "timeout",
        }


HEALTHY = {key: True for key in ("dns-1", "dns-2", "svc-1", "svc-2", "pod-same", "pod-cross", "ping-cross",
                                 "ping-big-cross", "toolbox-denied")}


@pytest.fixture(scope="module", params=list(DIALECTS))
def shop(request):
    cni, overlay = DIALECTS[request.param]
    lab = start(LabConfig(unique_name(), overlay=overlay, cni=cni).validate())
    try:
        v1, _ = lab.api()
        owner = v1.create_namespaced_config_map("shop", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="clients")))
        ref = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="clients", uid=owner.metadata.uid,
                                      controller=True)
        for node in ("node-1", "node-2"):
            v1.create_namespaced_pod("shop", client.V1Pod(
                metadata=client.V1ObjectMeta(name=f"client-{node}", labels={"app": "frontend", "role": "client"},
                                             owner_references=[ref]),
                spec=client.V1PodSpec(node_name=node, containers=[client.V1Container(name="c", image="netshoot")])))
        pods = lab.wait(lambda: [p for p in lab.pods("shop", "role=client") if p.status.phase == "Running"] if len(
            [p for p in lab.pods("shop", "role=client") if p.status.phase == "Running"]) == 2 else None,
            what="client pods")
        toolbox = lab.pods("ops")[0]
        yield Shop(lab, {p.spec.node_name: lab.netns(p) for p in pods},
                   {p.spec.node_name: p.status.pod_ip for p in pods}, lab.netns(toolbox), overlay)
    finally:
        lifecycle.down(lab.name)


def test_healthy_shop(shop):
    assert shop.observe() == HEALTHY


def broken(**changes) -> dict:
    return {**HEALTHY, **changes}


# fault -> what it breaks (every other observation must stay healthy)
EXPECTED = {
    "dns-down": broken(**{"dns-1": False, "dns-2": False}),
    "dns-stale-record": broken(**{"dns-1": False, "dns-2": False}),
    "selector-mismatch": broken(**{"svc-1": False, "svc-2": False}),
    "target-port-wrong": broken(**{"svc-1": False, "svc-2": False}),
    "pod-not-ready": broken(**{"svc-1": False, "svc-2": False}),
    "app-bind-localhost": broken(**{"svc-1": False, "svc-2": False, "pod-same": False, "pod-cross": False}),
    "kube-proxy-stale": broken(**{"svc-1": False, "dns-1": False}),
    "overlay-mtu": broken(**{"ping-big-cross": False}),
    "policy-deny-ingress": broken(**{"svc-1": False, "svc-2": False, "pod-same": False, "pod-cross": False}),
    "policy-egress-dns-blocked": broken(**{"dns-1": False, "dns-2": False}),
    "icmp-blocked": broken(**{"ping-cross": False, "ping-big-cross": False}),
}


def settle(shop, fault):
    """Wait for what a fault changes through the control plane (rollouts, endpoints)."""
    if fault in ("app-bind-localhost",):
        shop.lab.wait(lambda: rolled_out(shop.lab.pods("shop", "app=api"), shop.lab._old), timeout=15,
                      what="the api rollout")


def rolled_out(pods, old) -> bool:
    """Two new api pods, one per node, Running, none on its way out (a surge pod can still be)."""
    return (len(pods) == 2 and len({p.spec.node_name for p in pods}) == 2
            and all(p.metadata.name not in old and p.status.phase == "Running" and not p.metadata.deletion_timestamp
                    for p in pods))


def refused_as_not_there(shop, fault) -> bool:
    """An overlay fault on a routed lab: `lab break` refuses it and nothing is left broken."""
    if fault not in OVERLAY_FAULTS or shop.overlay != "routed":
        return False
    with pytest.raises(UsageError, match=r"does not exist in a \w+-routed lab"):
        lifecycle.break_fault(shop.lab.name, fault, None)
    assert lifecycle.statuses(shop.lab.name)[0].faults == ()
    return True


@pytest.mark.parametrize("fault", sorted(EXPECTED))
def test_fault_breaks_exactly_its_layer_and_fix_restores(shop, fault):
    if refused_as_not_there(shop, fault):
        return
    shop.lab._old = {p.metadata.name for p in shop.lab.pods("shop", "app=api")}
    lifecycle.break_fault(shop.lab.name, fault, None)
    try:
        settle(shop, fault)
        observed = shop.lab.wait(lambda: (lambda o: o if o == EXPECTED[fault] else None)(shop.observe()),
                                 timeout=6, what=f"{fault} to show") if fault != "dns-lossy" else None
        assert observed == EXPECTED[fault]
    finally:
        shop.lab._old = {p.metadata.name for p in shop.lab.pods("shop", "app=api")}
        lifecycle.fix_faults(shop.lab.name, fault)
    settle(shop, fault)
    assert shop.lab.wait(lambda: shop.observe() == HEALTHY, timeout=8, what=f"{fault} to be fixed",
                         show=shop.observe)


def new_client(shop, name: str) -> str:
    """A frontend-labelled pod on node-1, as soon as the API says it is Running: its netns."""
    v1, _ = shop.lab.api()
    owner = v1.read_namespaced_config_map("clients", "shop")
    ref = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="clients", uid=owner.metadata.uid,
                                  controller=True)
    v1.create_namespaced_pod("shop", client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"app": "frontend"}, owner_references=[ref]),
        spec=client.V1PodSpec(node_name="node-1", containers=[client.V1Container(name="c", image="netshoot")])))
    running = shop.lab.wait(lambda: next((p for p in shop.lab.pods("shop") if p.metadata.name == name
                                          and p.status.phase == "Running"), None), what=name)
    return shop.lab.netns(running)


def connect_seconds(netns: str, ip: str) -> float:
    began = time.monotonic()
    assert tcp(netns, ip, 8080, timeout=3) == "ok"
    return time.monotonic() - began


def test_a_pod_is_running_once_every_node_lets_it_through(shop):
    """A new pod turns Running after its node rules were programmed for its IP (a CNI's ADD, and
    the policy agents it informs, come before a real kubelet starts the containers): a new client's
    first SYN to each api pod is answered at once. With policy-lag, the first one waits for its
    retransmission (the kernel resends a lost SYN after 1 s)."""
    v1, _ = shop.lab.api()
    backends = list(shop.api_pods().values())
    try:
        netns = new_client(shop, "fresh-1")
        prompt = [connect_seconds(netns, ip) for ip in backends]
        lifecycle.break_fault(shop.lab.name, "policy-lag", None)
        try:
            late = connect_seconds(new_client(shop, "fresh-2"), backends[0])
        finally:
            lifecycle.fix_faults(shop.lab.name, "policy-lag")
    finally:
        for name in ("fresh-1", "fresh-2"):
            try:
                v1.delete_namespaced_pod(name, "shop", grace_period_seconds=0)
            except client.ApiException:
                pass
    assert all(seconds < 0.9 for seconds in prompt), prompt
    assert late >= 0.95, late


def test_dns_lossy_drops_some_not_all(shop):
    lifecycle.break_fault(shop.lab.name, "dns-lossy", None)
    try:
        answers = [dig(shop.clients["node-2"], "api.shop.svc.cluster.local") for _ in range(16)]
        lost = sum(1 for a in answers if a is None)
        assert 0 < lost < 16
    finally:
        lifecycle.fix_faults(shop.lab.name, "dns-lossy")
    assert all(dig(shop.clients["node-2"], "api.shop.svc.cluster.local") for _ in range(8))


def test_route_missing_and_overlay_blocked_cut_cross_node_only(shop):
    for fault in ("route-missing", "overlay-port-blocked"):
        if refused_as_not_there(shop, fault):
            continue
        lifecycle.break_fault(shop.lab.name, fault, None)
        try:
            pods = shop.api_pods()
            one = shop.clients["node-1"]
            assert tcp(one, pods["node-1"], 8080) == "ok"
            assert tcp(one, pods["node-2"], 8080) != "ok"
            assert not ping(one, shop.client_ips["node-2"])
        finally:
            lifecycle.fix_faults(shop.lab.name, fault)
        assert shop.lab.wait(lambda: tcp(shop.clients["node-1"], shop.api_pods()["node-2"], 8080) == "ok",
                             what=f"{fault} fixed")


def test_node_down_cuts_the_node_and_marks_it_not_ready(shop):
    v1, _ = shop.lab.api()
    lifecycle.break_fault(shop.lab.name, "node-down", None)
    try:
        pods = shop.api_pods()
        assert tcp(shop.clients["node-1"], pods["node-1"], 8080) == "ok"
        assert tcp(shop.clients["node-1"], pods["node-2"], 8080) == "timeout"
        ready = shop.lab.wait(lambda: [c.status for c in v1.read_node("node-2").status.conditions
                                       if c.type == "Ready" and c.status != "True"], what="node-2 NotReady")
        assert ready == ["Unknown"]
    finally:
        lifecycle.fix_faults(shop.lab.name, "node-down")
    shop.lab.wait(lambda: shop.observe() == HEALTHY, timeout=8, what="node-down fixed")


@pytest.mark.parametrize("fault", ["dns-down", "pod-not-ready"])
def test_break_and_fix_return_once_the_effects_settled(shop, fault):
    """A fault that goes through the control plane (pods scaled away, readiness failing, then the
    endpoints, Service rules and DNS following) is in effect when `lab break` returns, and gone
    when `lab fix` returns: the very first look sees it, with no waiting (a check run at once
    must never meet a terminating pod or a stale rule)."""
    applied = lifecycle.break_fault(shop.lab.name, fault, None)
    try:
        assert applied.settled
        assert shop.observe() == EXPECTED[fault]
    finally:
        lifecycle.fix_faults(shop.lab.name, fault)
    assert shop.observe() == HEALTHY
