"""The kube-system objects of each lab dialect: what a real cluster running that CNI and Service
proxy holds, so that detection (netdoctor.check.cluster_kind) reads the lab as it reads a real one.

Called by the lab daemon at `lab up`: `install(store, manifests(cni, overlay, proxy, nodes))`. The
objects follow the projects' own manifests (flannel's kube-flannel.yml, calico.yaml and
calico-vxlan.yaml, Cilium's Helm chart, kubeadm's kube-proxy), trimmed to what names the component
and its configuration. The lab runs no DaemonSet controller: the network is the lab's own
(netdoctor.lab.net, .proxy), and each DaemonSet's status says it runs on every node.
"""

from __future__ import annotations

import json

import yaml

from netdoctor.lab.api.store import Store
from netdoctor.lab.net import CLUSTER_CIDR

CNIS = ("flannel", "calico", "cilium")
OVERLAYS = ("vxlan", "routed")
PROXIES = ("nftables", "iptables", "none")  # none: the CNI translates Service IPs (Cilium's replacement)
KUBE_VERSION = "v1.36.2"
_RESOURCE = {"Namespace": "namespaces", "ConfigMap": "configmaps", "DaemonSet": "daemonsets"}


def manifests(cni: str, overlay: str, proxy: str, nodes: int) -> list[dict]:
    """The Namespaces, ConfigMaps and DaemonSets of this CNI with this overlay, and of this proxy."""
    if cni not in CNIS or overlay not in OVERLAYS or proxy not in PROXIES:
        raise ValueError(f"no lab addons for cni {cni!r}, overlay {overlay!r}, proxy {proxy!r}")
    built = {"flannel": _flannel, "calico": _calico, "cilium": _cilium}[cni](overlay, proxy, nodes)
    return built + (_kube_proxy(proxy, nodes) if proxy != "none" else [])


def install(store: Store, objects: list[dict]) -> None:
    """Create the objects, Namespaces first."""
    for obj in sorted(objects, key=lambda o: o["kind"] != "Namespace"):
        store.create(_RESOURCE[obj["kind"]], obj, obj["metadata"].get("namespace"))


def _flannel(overlay: str, _proxy: str, nodes: int) -> list[dict]:
    labels = {"tier": "node", "app": "flannel", "k8s-app": "flannel"}
    net_conf = {"Network": CLUSTER_CIDR, "EnableNFTables": False,
                "Backend": {"Type": "vxlan" if overlay == "vxlan" else "host-gw"}}
    cni_conf = {"name": "cbr0", "cniVersion": "0.3.1", "plugins": [
        {"type": "flannel", "delegate": {"hairpinMode": True, "isDefaultGateway": True}},
        {"type": "portmap", "capabilities": {"portMappings": True}}]}
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "kube-flannel", "labels": {
            "k8s-app": "flannel", "pod-security.kubernetes.io/enforce": "privileged"}}},
        _config_map("kube-flannel", "kube-flannel-cfg", labels, {
            "cni-conf.json": json.dumps(cni_conf, indent=2), "net-conf.json": json.dumps(net_conf, indent=2)}),
        _daemon_set("kube-flannel", "kube-flannel-ds", labels, {"app": "flannel"}, nodes, {
            "name": "kube-flannel", "image": "ghcr.io/flannel-io/flannel:v0.27.4", "command": ["/opt/bin/flanneld"],
            "args": ["--ip-masq", "--kube-subnet-mgr"]}, {"flannel-cfg": "kube-flannel-cfg"}),
    ]


def _calico(overlay: str, _proxy: str, nodes: int) -> list[dict]:
    """calico.yaml (BGP, no encapsulation here) or calico-vxlan.yaml (VXLAN, no BGP)."""
    labels = {"k8s-app": "calico-node"}
    vxlan = overlay == "vxlan"
    env = [{"name": "CALICO_NETWORKING_BACKEND",
            "valueFrom": {"configMapKeyRef": {"name": "calico-config", "key": "calico_backend"}}},
           {"name": "CLUSTER_TYPE", "value": "k8s,bgp" if not vxlan else "k8s"},
           {"name": "CALICO_IPV4POOL_CIDR", "value": CLUSTER_CIDR},
           {"name": "CALICO_IPV4POOL_IPIP", "value": "Never"},
           {"name": "CALICO_IPV4POOL_VXLAN", "value": "Always" if vxlan else "Never"},
           {"name": "FELIX_DEFAULTENDPOINTTOHOSTACTION", "value": "ACCEPT"}]
    return [
        _config_map("kube-system", "calico-config", {}, {
            "typha_service_name": "none", "calico_backend": "vxlan" if vxlan else "bird", "veth_mtu": "0"}),
        _daemon_set("kube-system", "calico-node", labels, labels, nodes, {
            "name": "calico-node", "image": "docker.io/calico/node:v3.31.2", "env": env}),
    ]


def _cilium(overlay: str, proxy: str, nodes: int) -> list[dict]:
    """The Helm chart's cilium-config and agent DaemonSet."""
    labels = {"k8s-app": "cilium", "app.kubernetes.io/name": "cilium-agent", "app.kubernetes.io/part-of": "cilium"}
    data = {"routing-mode": "tunnel" if overlay == "vxlan" else "native", "tunnel-protocol": "vxlan",
            "kube-proxy-replacement": "true" if proxy == "none" else "false",
            "ipam": "kubernetes", "cluster-pool-ipv4-cidr": CLUSTER_CIDR}
    if overlay == "routed":
        data.update({"auto-direct-node-routes": "true", "ipv4-native-routing-cidr": CLUSTER_CIDR})
    return [
        _config_map("kube-system", "cilium-config", {"app.kubernetes.io/part-of": "cilium"}, data),
        _daemon_set("kube-system", "cilium", labels, {"k8s-app": "cilium"}, nodes, {
            "name": "cilium-agent", "image": "quay.io/cilium/cilium:v1.18.4", "command": ["cilium-agent"],
            "args": ["--config-dir=/tmp/cilium/config-map"]}, {"cilium-config-path": "cilium-config"}),
    ]


def _kube_proxy(mode: str, nodes: int) -> list[dict]:
    """kubeadm's: the configuration file in ConfigMap kube-proxy (`mode: ""` would be iptables)."""
    config = {"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
              "bindAddress": "0.0.0.0", "clusterCIDR": CLUSTER_CIDR, "mode": mode,
              "clientConnection": {"kubeconfig": "/var/lib/kube-proxy/kubeconfig.conf"}}
    labels = {"k8s-app": "kube-proxy"}
    return [
        _config_map("kube-system", "kube-proxy", {"app": "kube-proxy"}, {"config.conf": yaml.safe_dump(config)}),
        _daemon_set("kube-system", "kube-proxy", labels, labels, nodes, {
            "name": "kube-proxy", "image": f"registry.k8s.io/kube-proxy:{KUBE_VERSION}",
            "command": ["/usr/local/bin/kube-proxy", "--config=/var/lib/kube-proxy/config.conf",
                        "--hostname-override=$(NODE_NAME)"]}, {"kube-proxy": "kube-proxy"}),
    ]


def _config_map(namespace: str, name: str, labels: dict, data: dict) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": namespace,
                                                                  "labels": labels}, "data": data}


def _daemon_set(namespace: str, name: str, labels: dict, selector: dict, nodes: int, container: dict,
                volumes: dict | None = None) -> dict:
    """A node agent's DaemonSet (hostNetwork, system-node-critical), running on every node."""
    return {
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "selector": {"matchLabels": selector},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {"metadata": {"labels": {**labels, **selector}}, "spec": {
                "hostNetwork": True, "priorityClassName": "system-node-critical",
                "tolerations": [{"operator": "Exists"}],
                "containers": [{**container, "securityContext": {"privileged": True}}],
                "volumes": [{"name": volume, "configMap": {"name": config}} for volume, config in (volumes or {}).items()],
            }},
        },
        "status": {"currentNumberScheduled": nodes, "desiredNumberScheduled": nodes, "numberAvailable": nodes,
                   "numberMisscheduled": 0, "numberReady": nodes, "observedGeneration": 1,
                   "updatedNumberScheduled": nodes},
    }
