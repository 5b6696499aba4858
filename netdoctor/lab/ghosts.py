"""Ghost objects: the API side of a big cluster, without its data plane.

`lab up --ghost-nodes N --ghost-pods M --ghost-policies K` has the lab daemon load these into the
store before the API server starts (Store.add_ghosts): clients read them like any object, the lab's
controllers never see them. Ghost nodes are Ready and labelled with zones, pools and instance types
like a cloud's, but they are virtual-kubelet nodes — label `type=virtual-kubelet`, taint
`virtual-kubelet.io/provider=netdoctor-ghost:NoSchedule` — which is what a real cluster shows for a
node with no kernel of its own (ACI, serverless pools): no probe belongs there. Ghost pods run
Ready on ghost nodes, in namespaces of their own (`ghost-NN`), and the ghost NetworkPolicies select
them there: the namespaces a check of the lab's own workloads involves stay as they were.
"""

from __future__ import annotations

from typing import Iterator

from netdoctor.lab.api.store import Store

GHOST_TAINT = {"key": "virtual-kubelet.io/provider", "value": "netdoctor-ghost", "effect": "NoSchedule"}
ZONES = ("zone-a", "zone-b", "zone-c")
POOLS = (("general", "m6i.xlarge"), ("memory", "r6i.2xlarge"), ("compute", "c6i.4xlarge"), ("spot", "m6a.large"))
PODS_PER_NAMESPACE = 1000
APPS_PER_NAMESPACE = 50


def load(store: Store, nodes: int, pods: int, policies: int) -> int:
    """Add the ghosts to `store`; how many objects that made."""
    names = [node_name(i) for i in range(nodes)]
    namespaces = [f"ghost-{n:02d}" for n in range(max(1, -(-pods // PODS_PER_NAMESPACE)))] if pods or policies else []
    return (store.add_ghosts("namespaces", (_namespace(n) for n in namespaces))
            + store.add_ghosts("nodes", (_node(i) for i in range(nodes)))
            + store.add_ghosts("pods", _pods(pods, names, namespaces))
            + store.add_ghosts("networkpolicies", _policies(policies, namespaces)))


def node_name(index: int) -> str:
    return f"ghost-{index:05d}"


def _namespace(name: str) -> dict:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name, "team": "ghost"}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}


def _node(index: int) -> dict:
    name = node_name(index)
    pool, instance = POOLS[index % len(POOLS)]
    return {
        "metadata": {"name": name, "labels": {
            "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
            "kubernetes.io/role": "agent", "type": "virtual-kubelet",
            "topology.kubernetes.io/zone": ZONES[index % len(ZONES)], "karpenter.sh/nodepool": pool,
            "node.kubernetes.io/instance-type": instance}},
        "spec": {"taints": [dict(GHOST_TAINT)]},
        "status": {
            "addresses": [{"type": "InternalIP", "address": _ip(250, index)}, {"type": "Hostname", "address": name}],
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "kubelet is posting ready status"}],
            "nodeInfo": {"kubeletVersion": "v1.36.2-vk", "containerRuntimeVersion": "ghost://1.0",
                         "kernelVersion": "", "osImage": "virtual-kubelet", "operatingSystem": "linux",
                         "architecture": "amd64"},
        },
    }


def _pods(count: int, nodes: list[str], namespaces: list[str]) -> Iterator[dict]:
    for index in range(count if nodes else 0):
        namespace = namespaces[index // PODS_PER_NAMESPACE]
        app = f"app-{index % APPS_PER_NAMESPACE}"
        yield {
            "metadata": {"name": f"{app}-{index:06d}", "namespace": namespace, "labels": {"app": app}},
            "spec": {"nodeName": nodes[index % len(nodes)], "containers": [{
                "name": "app", "image": "registry.example/app:1", "ports": [{"name": "http", "containerPort": 8080}]}],
                "tolerations": [{"key": GHOST_TAINT["key"], "operator": "Exists"}]},
            "status": {"phase": "Running", "podIP": _ip(248, index), "hostIP": _ip(250, index % len(nodes)),
                       "conditions": [{"type": "Ready", "status": "True"}]},
        }


def _policies(count: int, namespaces: list[str]) -> Iterator[dict]:
    for index in range(count if namespaces else 0):
        app = f"app-{index % APPS_PER_NAMESPACE}"
        yield {
            "metadata": {"name": f"allow-{app}-{index:05d}", "namespace": namespaces[index % len(namespaces)]},
            "spec": {"podSelector": {"matchLabels": {"app": app}}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "ghost"}},
                                            "podSelector": {"matchLabels": {"app": f"app-{(index + 1) % APPS_PER_NAMESPACE}"}}}],
                                  "ports": [{"protocol": "TCP", "port": 8080}]}]},
        }


def _ip(first: int, index: int) -> str:
    """10.<first>.x.y for the index-th ghost: outside the lab's pod, Service and node ranges."""
    return f"10.{first + index // 65024}.{index // 254 % 256}.{index % 254 + 1}"
