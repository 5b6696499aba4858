"""The lab's fault catalog: each fault reproduces a real failure at the layer where it happens.

The catalog (names, summaries, the layer each breaks, default targets) is read by `netdoctor lab
faults` and by tests; `apply`/`revert` run inside the lab daemon, which owns the objects and the
data plane, when the desired fault set (written by `lab break` / `lab fix`) changes.
Defaults target the `shop` scenario: svc shop/api, deploy shop/api, node-1. A fault of the
network is injected the way it happens in the lab's CNI dialect (netdoctor.lab.cni: its routes, its
VXLAN port and device; Cilium's socket-level translation is what goes stale), and one the dialect
cannot have (an overlay fault on a routed lab) is refused as the user's error.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Callable

from netdoctor.lab import cni, net, sh
from netdoctor.lab.api.status import ApiError
from netdoctor.labels import from_label_selector

FAULT_TABLE = "fault"
MERGE = "application/merge-patch+json"


@dataclass(frozen=True)
class Fault:
    name: str
    layer: str  # the checklist layer it breaks: target, dns, endpoints, pod, service, cross-node, policy
    summary: str
    default_target: str
    apply: Callable
    revert: Callable


def _split(target: str) -> tuple[str, str]:
    namespace, _, name = target.rpartition("/")
    return namespace or "default", name


# --- DNS -------------------------------------------------------------------------------------
def _dns_down(lab, target):
    ns, name = _split(target)
    lab.store.patch("deployments", ns, name, {"spec": {"replicas": 0}}, MERGE)


def _dns_up(lab, target):
    ns, name = _split(target)
    lab.store.patch("deployments", ns, name, {"spec": {"replicas": 1}}, MERGE)


def _dns_stale(lab, target):
    ns, name = _split(target)
    lab.store.get("services", ns, name)  # 404 for a target that is not a Service
    taken = {s["spec"].get("clusterIP") for s in lab.store.list("services")}
    stale = next(str(ip) for ip in reversed(list(ipaddress.ip_network(net.SERVICE_CIDR).hosts())) if str(ip) not in taken)
    lab.dataplane.dns_overrides[f"{name}.{ns}.svc.cluster.local."] = [stale]


def _dns_fresh(lab, target):
    ns, name = _split(target)
    lab.dataplane.dns_overrides.pop(f"{name}.{ns}.svc.cluster.local.", None)


def _dns_lossy(lab, target):
    """Every other query each DNS pod's node forwards to it is dropped: half, always some and never
    all of a probe's repeated queries (a coin per query left 0 or 10 of 10 lost once in ~500
    checks, a verdict of silent DNS or none, right for what was seen, not this fault's)."""
    ns, name = _split(target)
    for pod in _pods_of_deployment(lab, ns, name):
        node = lab.node(pod["spec"]["nodeName"])
        _fault_rules(node.netns, "dns-lossy", [
            f"ip daddr {pod['status']['podIP']} udp dport 53 numgen inc mod 2 == 0 drop"])


def _dns_lossless(lab, target):
    for node in lab.nodes:
        _clear_rules(node.netns, "dns-lossy")


# --- Service and endpoints -------------------------------------------------------------------
def _selector_mismatch(lab, target):
    ns, name = _split(target)
    selector = lab.store.get("services", ns, name)["spec"]["selector"]
    lab.saved[("selector-mismatch", target)] = selector
    key = "app" if "app" in selector else next(iter(selector))
    broken = {**selector, key: f"{selector[key]}-v2"}
    _set_selector(lab, ns, name, broken)


def _selector_restore(lab, target):
    ns, name = _split(target)
    _set_selector(lab, ns, name, lab.saved.pop(("selector-mismatch", target)))


def _set_selector(lab, ns, name, selector):
    service = lab.store.get("services", ns, name)
    service["spec"]["selector"] = selector
    lab.store.replace("services", ns, name, service)


def _target_port_wrong(lab, target):
    ns, name = _split(target)
    service = lab.store.get("services", ns, name)
    lab.saved[("target-port-wrong", target)] = [dict(p) for p in service["spec"]["ports"]]
    for port in service["spec"]["ports"]:
        number = port.get("targetPort", port["port"])
        port["targetPort"] = (int(number) if str(number).isdigit() else _named(lab, ns, service, number)) + 1
    lab.store.replace("services", ns, name, service)


def _named(lab, ns, service, port_name):
    for pod in lab.store.list("pods", ns):
        for container in pod["spec"]["containers"]:
            for port in container.get("ports") or []:
                if port.get("name") == port_name:
                    return int(port["containerPort"])
    raise ApiError(422, f"named port {port_name} not found on the Service's pods")


def _target_port_restore(lab, target):
    ns, name = _split(target)
    service = lab.store.get("services", ns, name)
    service["spec"]["ports"] = lab.saved.pop(("target-port-wrong", target))
    lab.store.replace("services", ns, name, service)


def _set_bind_address(value):
    """Breaking rolls the change out with Recreate (a rolling update would stop at the first new
    pod that never gets Ready, the old pods still serving); fixing puts the strategy back."""
    def change(lab, target):
        ns, name = _split(target)
        deploy = lab.store.get("deployments", ns, name)
        for container in deploy["spec"]["template"]["spec"]["containers"]:
            env = [e for e in container.get("env") or [] if e["name"] != "BIND_ADDRESS"]
            container["env"] = env + ([{"name": "BIND_ADDRESS", "value": value}] if value else [])
        if value:
            lab.saved[("app-bind-localhost", target)] = deploy["spec"].get("strategy")
            deploy["spec"]["strategy"] = {"type": "Recreate"}
        elif ("app-bind-localhost", target) in lab.saved:
            deploy["spec"]["strategy"] = lab.saved.pop(("app-bind-localhost", target))
        lab.store.replace("deployments", ns, name, deploy)
    return change


def _unhealthy(lab, target):
    ns, name = _split(target)
    for pod in _pods_of_deployment(lab, ns, name):
        (lab.runtime.workdir(pod["metadata"]["uid"]) / "healthz").unlink(missing_ok=True)


def _healthy(lab, target):
    ns, name = _split(target)
    for pod in _pods_of_deployment(lab, ns, name):
        (lab.runtime.workdir(pod["metadata"]["uid"]) / "healthz").write_text("ok\n")


def _pods_of_deployment(lab, ns, name):
    selector = from_label_selector(lab.store.get("deployments", ns, name)["spec"]["selector"])
    return [p for p in lab.store.list("pods", ns) if selector.matches(p["metadata"].get("labels") or {})
            and lab.runtime.is_registered(p["metadata"]["uid"]) and (p.get("status") or {}).get("podIP")]


# --- nodes and the overlay -------------------------------------------------------------------
def _kube_proxy_stale(lab, target):
    lab.dataplane.stale_nodes.add(lab.node(target).name)


def _kube_proxy_fresh(lab, target):
    lab.dataplane.stale_nodes.discard(lab.node(target).name)


def _route_missing(lab, target):
    node = lab.node(target)
    sh.ip_batch(node.netns, [r.line("del") for r in cni.of(node).peer_routes(node, lab.peers(node))])


def _route_restore(lab, target):
    node = lab.node(target)
    sh.ip_batch(node.netns, [r.line("replace") for r in cni.of(node).peer_routes(node, lab.peers(node))])


def _overlay_mtu(lab, target):
    _set_overlay_mtu(lab, lab.node(target), mtu=1500, df=True)


def _overlay_mtu_restore(lab, target):
    _set_overlay_mtu(lab, lab.node(target), mtu=None, df=False)


def _set_overlay_mtu(lab, node, mtu, df):
    dialect = cni.require_overlay(node)
    sandboxes = [s for s in map(lab.kubelets.sandbox_of, lab.kubelets.local_pod_uids(node.name)) if s and s.host_veth]
    dialect.set_overlay_mtu(node, lab.peers(node), sandboxes, mtu, df)
    lab.kubelets.pod_mtu[node.name] = mtu or node.pod_mtu
    for sandbox in sandboxes:
        sh.sysctl(sandbox.netns, "net.ipv4.route.flush=1")
    sh.sysctl(node.netns, "net.ipv4.route.flush=1")


def _overlay_blocked(lab, target):
    node = lab.nodes[0]
    port = cni.require_overlay(node).overlay_port(node)
    sh.nft(net.fabric_netns(lab.name), _table("bridge", "overlay-port-blocked", [f"udp dport {port} drop"]))


def _overlay_open(lab, target):
    _clear_rules(net.fabric_netns(lab.name), "overlay-port-blocked", family="bridge")


def _icmp_blocked(lab, target):
    for node in lab.nodes:
        _fault_rules(node.netns, "icmp-blocked", ["icmp type echo-request drop"])


def _icmp_open(lab, target):
    for node in lab.nodes:
        _clear_rules(node.netns, "icmp-blocked")


POLICY_LAG_S = 0.9  # under the 1 s a lost SYN waits to be sent again: the retry gets through


def _policy_slow(lab, target):
    lab.dataplane.policy_lag = POLICY_LAG_S


def _policy_prompt(lab, target):
    lab.dataplane.policy_lag = 0.0


CLOCK_SKEW_S = -2.0  # the node's clock behind the others': beyond any window the judge reads a connection in


def _clock_off(lab, target):
    lab.node(target)  # 404 for a node the lab does not have
    lab.runtime.clocks[target] = CLOCK_SKEW_S


def _clock_on(lab, target):
    lab.runtime.clocks.pop(target, None)


def _node_down(lab, target):
    node = lab.node(target)
    sh.ip_batch(net.fabric_netns(lab.name), [f"link set {node.fabric_port} down"])
    lab.kubelets.down_nodes.add(node.name)


def _node_up(lab, target):
    node = lab.node(target)
    sh.ip_batch(net.fabric_netns(lab.name), [f"link set {node.fabric_port} up"])
    lab.kubelets.down_nodes.discard(node.name)


# --- policy ----------------------------------------------------------------------------------
DENY_INGRESS = "netdoctor-fault-deny-ingress"
EGRESS_NO_DNS = "netdoctor-fault-egress-no-dns"


def _deny_ingress(lab, target):
    """A default-deny for the Service's pods, with the policies that let clients in set aside
    (policies add up: a deny-all next to an allow rule would change nothing)."""
    ns, name = _split(target)
    selector = lab.store.get("services", ns, name)["spec"]["selector"]
    allowing = [p for p in lab.store.list("networkpolicies", ns)
                if from_label_selector(p["spec"].get("podSelector")).matches(selector)]
    lab.saved[("policy-deny-ingress", target)] = allowing
    for policy in allowing:
        lab.store.delete("networkpolicies", ns, policy["metadata"]["name"])
    lab.store.create("networkpolicies", _policy(DENY_INGRESS, ns, {"matchLabels": selector}, ["Ingress"], {}), ns)


def _allow_ingress_again(lab, target):
    ns, _ = _split(target)
    _delete_policy(DENY_INGRESS, lambda t: ns)(lab, target)
    for policy in lab.saved.pop(("policy-deny-ingress", target), []):
        metadata = {k: v for k, v in policy["metadata"].items() if k in ("name", "namespace", "labels", "annotations")}
        lab.store.create("networkpolicies", {**policy, "metadata": metadata}, ns)


def _egress_no_dns(lab, target):
    ns = target
    same_namespace = {"egress": [{"to": [{"podSelector": {}}]}]}
    lab.store.create("networkpolicies", _policy(EGRESS_NO_DNS, ns, {}, ["Egress"], same_namespace), ns)


def _delete_policy(name, namespace_of):
    def revert(lab, target):
        try:
            lab.store.delete("networkpolicies", namespace_of(target), name)
        except ApiError as exc:
            if exc.code != 404:
                raise
    return revert


def _policy(name, ns, pod_selector, types, rules):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns, "labels": {"netdoctor.io/lab-fault": "true"}},
            "spec": {"podSelector": pod_selector, "policyTypes": types, **rules}}


# --- nftables helpers ------------------------------------------------------------------------
def _table(family: str, fault: str, rules: list[str]) -> str:
    name = f"{FAULT_TABLE}-{fault}"
    body = "".join(f"    {rule}\n" for rule in rules)
    return (f"table {family} {name} {{}}\ndelete table {family} {name}\n"
            f"table {family} {name} {{\n  chain forward {{\n    type filter hook forward priority -10; "
            f"policy accept;\n{body}  }}\n}}\n")


def _fault_rules(netns: str, fault: str, rules: list[str]) -> None:
    sh.nft(netns, _table("ip", fault, rules))


def _clear_rules(netns: str, fault: str, family: str = "ip") -> None:
    name = f"{FAULT_TABLE}-{fault}"
    sh.nft(netns, f"table {family} {name} {{}}\ndelete table {family} {name}\n")


CATALOG: dict[str, Fault] = {f.name: f for f in [
    Fault("dns-down", "dns", "the cluster DNS Deployment is scaled to zero", "kube-system/coredns",
          _dns_down, _dns_up),
    Fault("dns-stale-record", "dns", "DNS answers an old IP for the Service", "shop/api", _dns_stale, _dns_fresh),
    Fault("dns-lossy", "dns", "half of the DNS queries to the DNS pods are dropped", "kube-system/coredns",
          _dns_lossy, _dns_lossless),
    Fault("selector-mismatch", "endpoints", "the Service's selector matches no pod", "shop/api",
          _selector_mismatch, _selector_restore),
    Fault("target-port-wrong", "target", "the Service's targetPort points at a port nothing listens on", "shop/api",
          _target_port_wrong, _target_port_restore),
    Fault("app-bind-localhost", "target", "the app listens on 127.0.0.1 only", "shop/api",
          _set_bind_address("127.0.0.1"), _set_bind_address(None)),
    Fault("pod-not-ready", "target", "the backends' readiness probe fails", "shop/api", _unhealthy, _healthy),
    Fault("kube-proxy-stale", "service", "one node has no Service rules (kube-proxy stopped; under Cilium its "
          "socket-level translation)", "node-1",
          _kube_proxy_stale, _kube_proxy_fresh),
    Fault("route-missing", "cross-node", "one node lost its routes to the other nodes' pods (Calico: their /26 "
          "blocks)", "node-1",
          _route_missing, _route_restore),
    Fault("overlay-mtu", "cross-node", "one node's pods and VXLAN use MTU 1500 over a 1500 underlay (DF set)",
          "node-1", _overlay_mtu, _overlay_mtu_restore),
    Fault("overlay-port-blocked", "cross-node", "the fabric drops the overlay's VXLAN (UDP 8472; 4789 for Calico)",
          "fabric",
          _overlay_blocked, _overlay_open),
    Fault("policy-deny-ingress", "policy", "a default-deny NetworkPolicy isolates the Service's pods, no rule lets "
          "clients in", "shop/api",
          _deny_ingress, _allow_ingress_again),
    Fault("policy-egress-dns-blocked", "dns", "an egress NetworkPolicy that forgets DNS", "shop",
          _egress_no_dns, _delete_policy(EGRESS_NO_DNS, lambda t: t)),
    Fault("icmp-blocked", "none", "nodes drop ICMP echo: ping fails, TCP works", "all", _icmp_blocked, _icmp_open),
    Fault("policy-lag", "none", f"the nodes' NetworkPolicy rules admit a new pod {POLICY_LAG_S:g} s after it gets "
          "its IP (Felix or Cilium's agents catching up): its first SYNs are dropped or rejected, later ones get through",
          "all", _policy_slow, _policy_prompt),
    Fault("node-down", "cross-node", "a node is cut off the fabric and goes NotReady", "node-2",
          _node_down, _node_up),
    Fault("node-clock-skew", "none", f"a node's clock runs {-CLOCK_SKEW_S:g} s behind the others' (its time sync "
          "stopped): the packets it captures carry its time", "node-2", _clock_off, _clock_on),
]}
