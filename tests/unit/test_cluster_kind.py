"""Detection of what the cluster is made of (issue 12 item 3): the CNI, its overlay and the Service
proxy, from crafted kube-system object sets of every dialect in cni-dialects-facts §8 (also those
the lab cannot build), from the lab's own objects, through a Kube that refuses (403), and refined
from crafted node Inventories."""

from __future__ import annotations

import pytest
import yaml

from netdoctor.check.cluster_kind import KubeSystem, config_maps_to_read, decide, read
from netdoctor.cluster.kube import Forbidden, NotFound
from netdoctor.judge.cluster_kind import from_captures, refine
from netdoctor.lab import addons
from netdoctor.model import (
    Capture, ClusterKind, Cni, CniKind, Confidence, Overlay, ProxyKind, ProxyMode, ServiceProxy,
)
from netdoctor.observations import Interface, InterfaceKind, Inventory, Route


def daemon_set(ns, name, labels=None, image="example/agent:v1", args=(), env=None, config_maps=(), scheduled=3):
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
            "spec": {"template": {"spec": {
                "containers": [{"name": name, "image": image, "args": list(args),
                                "env": [{"name": k, "value": v} for k, v in (env or {}).items()]}],
                "volumes": [{"name": f"v{i}", "configMap": {"name": c}} for i, c in enumerate(config_maps)]}}},
            "status": {"desiredNumberScheduled": scheduled}}


def config_map(ns, name, **data):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns}, "data": data}


def kube_proxy(mode, ns="kube-system", name="kube-proxy", key="config.conf", scheduled=3):
    conf = yaml.safe_dump({"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
                           "mode": mode})
    return ([daemon_set(ns, "kube-proxy", {"k8s-app": "kube-proxy"}, "registry.k8s.io/kube-proxy:v1.33.1",
                        config_maps=(name,), scheduled=scheduled)],
            [config_map(ns, name, **{key: conf})])


def cluster(daemon_sets, config_maps=(), missing=(), refused=None) -> ClusterKind:
    """decide() on these objects, as read() hands them over: every ConfigMap asked for, found or None."""
    given = {f"{c['metadata']['namespace']}/{c['metadata']['name']}": c for c in config_maps}
    wanted = {f"{ns}/{name}": given.get(f"{ns}/{name}") for ns, name in config_maps_to_read(daemon_sets)}
    assert set(given) <= set(wanted), f"crafted ConfigMaps nobody reads: {set(given) - set(wanted)}"
    return decide(KubeSystem(tuple(daemon_sets), {k: v for k, v in wanted.items() if k not in missing},
                             refused or {}))


FLANNEL_CONF = '{"Network": "10.244.0.0/16", "Backend": {"Type": "%s"}}'
IPTABLES_PROXY, IPVS_PROXY, NFT_PROXY = kube_proxy(""), kube_proxy("ipvs"), kube_proxy("nftables")


def test_flannel_in_kube_flannel_with_kube_proxy_in_iptables_mode():
    ds = daemon_set("kube-flannel", "kube-flannel-ds", {"app": "flannel", "k8s-app": "flannel"},
                    "ghcr.io/flannel-io/flannel:v0.26.7", config_maps=("kube-flannel-cfg",))
    kind = cluster([ds, *IPTABLES_PROXY[0]], [config_map("kube-flannel", "kube-flannel-cfg",
                                                         **{"net-conf.json": FLANNEL_CONF % "vxlan"}),
                                              *IPTABLES_PROXY[1]])
    assert (kind.cni.name, kind.cni.overlay, kind.cni.confidence) == (Cni.FLANNEL, Overlay.VXLAN, Confidence.HIGH)
    assert kind.cni.evidence == ("DaemonSet kube-flannel/kube-flannel-ds (image ghcr.io/flannel-io/flannel:v0.26.7)",
                                 "ConfigMap kube-flannel/kube-flannel-cfg Backend.Type: vxlan")
    assert (kind.proxy.name, kind.proxy.mode, kind.proxy.confidence) == (
        ServiceProxy.KUBE_PROXY, ProxyMode.IPTABLES, Confidence.HIGH)
    assert 'ConfigMap kube-system/kube-proxy config.conf mode: "" (iptables, the default)' in kind.proxy.evidence


def test_older_flannel_per_arch_in_kube_system_with_host_gw_is_routed():
    ds = daemon_set("kube-system", "kube-flannel-ds-amd64", {"tier": "node"})
    kind = cluster([ds], [config_map("kube-system", "kube-flannel-cfg", **{"net-conf.json": FLANNEL_CONF % "host-gw"})])
    assert (kind.cni.name, kind.cni.overlay) == (Cni.FLANNEL, Overlay.ROUTED)


def calico_node(ns="kube-system", **env):
    return daemon_set(ns, "calico-node", {"k8s-app": "calico-node"}, "docker.io/calico/node:v3.29.1", env=env)


def test_calico_manifest_bird_with_the_default_ipip_pool_and_kube_proxy_ipvs():
    kind = cluster([calico_node(CALICO_IPV4POOL_IPIP="Always", CALICO_IPV4POOL_VXLAN="Never"), *IPVS_PROXY[0]],
                   [config_map("kube-system", "calico-config", calico_backend="bird"), *IPVS_PROXY[1]])
    assert (kind.cni.name, kind.cni.overlay, kind.cni.confidence) == (Cni.CALICO, Overlay.IPIP, Confidence.MEDIUM)
    assert "ConfigMap kube-system/calico-config calico_backend: bird" in kind.cni.evidence
    assert any("CALICO_IPV4POOL_IPIP=Always" in line for line in kind.cni.evidence)
    assert (kind.proxy.name, kind.proxy.mode) == (ServiceProxy.KUBE_PROXY, ProxyMode.IPVS)


def test_calico_vxlan_manifest():
    kind = cluster([calico_node(CALICO_IPV4POOL_VXLAN="Always", CALICO_IPV4POOL_IPIP="Never")],
                   [config_map("kube-system", "calico-config", calico_backend="vxlan")])
    assert (kind.cni.name, kind.cni.overlay, kind.cni.confidence) == (Cni.CALICO, Overlay.VXLAN, Confidence.HIGH)


def test_calico_operator_in_calico_system_says_the_ippool_decides():
    kind = cluster([calico_node("calico-system", CALICO_NETWORKING_BACKEND="bird"), *NFT_PROXY[0]], NFT_PROXY[1])
    assert (kind.cni.name, kind.cni.overlay) == (Cni.CALICO, Overlay.UNKNOWN)
    assert kind.cni.evidence[1] == ("DaemonSet calico-system/calico-node (image docker.io/calico/node:v3.29.1) "
                                    "env CALICO_NETWORKING_BACKEND=bird")
    assert "IPPools" in kind.cni.evidence[-1]
    assert (kind.proxy.name, kind.proxy.mode) == (ServiceProxy.KUBE_PROXY, ProxyMode.NFTABLES)


def test_calico_ebpf_with_kube_proxy_scheduled_nowhere():
    proxy_ds, proxy_cm = kube_proxy("", scheduled=0)
    kind = cluster([calico_node("calico-system", CALICO_NETWORKING_BACKEND="vxlan", FELIX_BPFENABLED="true"),
                    *proxy_ds], proxy_cm)
    assert (kind.proxy.name, kind.proxy.mode, kind.proxy.confidence) == (
        ServiceProxy.CALICO, ProxyMode.EBPF, Confidence.HIGH)
    assert any("schedules no pod" in line for line in kind.proxy.evidence)


def cilium(ns="kube-system", **data):
    ds = daemon_set(ns, "cilium", {"k8s-app": "cilium"}, "quay.io/cilium/cilium:v1.17.2",
                    config_maps=("cilium-config",))
    return ds, config_map(ns, "cilium-config", **data)


def test_cilium_with_kube_proxy_replacement_and_no_kube_proxy():
    ds, cm = cilium(**{"kube-proxy-replacement": "true", "routing-mode": "tunnel", "tunnel-protocol": "vxlan"})
    kind = cluster([ds], [cm])
    assert (kind.cni.name, kind.cni.overlay, kind.cni.confidence) == (Cni.CILIUM, Overlay.VXLAN, Confidence.HIGH)
    assert (kind.proxy.name, kind.proxy.mode, kind.proxy.confidence) == (
        ServiceProxy.CILIUM, ProxyMode.EBPF, Confidence.HIGH)
    assert kind.proxy.evidence == ("no kube-proxy DaemonSet in kube-system",
                                   "ConfigMap kube-system/cilium-config kube-proxy-replacement: true")


def test_cilium_without_replacement_native_routing_beside_kube_proxy():
    ds, cm = cilium(**{"kube-proxy-replacement": "false", "routing-mode": "native"})
    kind = cluster([ds, *IPTABLES_PROXY[0]], [cm, *IPTABLES_PROXY[1]])
    assert (kind.cni.name, kind.cni.overlay) == (Cni.CILIUM, Overlay.ROUTED)
    assert (kind.proxy.name, kind.proxy.mode) == (ServiceProxy.KUBE_PROXY, ProxyMode.IPTABLES)


def test_cilium_replacement_with_kube_proxy_still_running_is_cilium_with_medium_confidence():
    ds, cm = cilium(**{"kube-proxy-replacement": "true"})
    kind = cluster([ds, *NFT_PROXY[0]], [cm, *NFT_PROXY[1]])
    assert (kind.proxy.name, kind.proxy.confidence) == (ServiceProxy.CILIUM, Confidence.MEDIUM)
    assert any("kube-system/kube-proxy" in line and "runs too" in line for line in kind.proxy.evidence)


@pytest.mark.parametrize("data, overlay", [
    ({"tunnel-protocol": "geneve"}, Overlay.GENEVE),
    ({}, Overlay.VXLAN),  # the defaults: routing-mode tunnel, tunnel-protocol vxlan
    ({"tunnel": "disabled"}, Overlay.ROUTED),  # before 1.15
    ({"tunnel": "geneve"}, Overlay.GENEVE),
])
def test_cilium_overlays(data, overlay):
    ds, cm = cilium("cilium", **data)
    assert cluster([ds], [cm]).cni.overlay is overlay


def test_aws_vpc_cni_with_eks_kube_proxy_config():
    proxy_ds, proxy_cm = kube_proxy("iptables", name="kube-proxy-config", key="config")
    kind = cluster([daemon_set("kube-system", "aws-node", {"k8s-app": "aws-node"},
                               "602401143452.dkr.ecr.us-west-2.amazonaws.com/amazon-k8s-cni:v1.19.2"), *proxy_ds],
                   proxy_cm)
    assert (kind.cni.name, kind.cni.overlay, kind.cni.confidence) == (Cni.AWS_VPC, Overlay.ROUTED, Confidence.HIGH)
    assert (kind.proxy.mode, kind.proxy.confidence) == (ProxyMode.IPTABLES, Confidence.HIGH)


def test_aws_node_beside_calico_is_the_vpc_cni_with_calico_named():
    kind = cluster([calico_node(), daemon_set("kube-system", "aws-node", {"k8s-app": "aws-node"})],
                   missing=("kube-system/calico-config",))
    assert (kind.cni.name, kind.cni.confidence) == (Cni.AWS_VPC, Confidence.MEDIUM)
    assert any(line.startswith("also running: calico") for line in kind.cni.evidence)


def antrea(conf):
    ds = daemon_set("kube-system", "antrea-agent", {"app": "antrea", "component": "antrea-agent"},
                    "antrea/antrea-agent-ubuntu:v2.2.0", config_maps=("antrea-config-h5kh69mc88",))
    return ds, config_map("kube-system", "antrea-config-h5kh69mc88", **{"antrea-agent.conf": conf})


@pytest.mark.parametrize("conf, overlay", [
    ("# tunnelType: geneve\nfeatureGates: {}\n", Overlay.GENEVE),  # the default
    ("tunnelType: vxlan\n", Overlay.VXLAN),
    ("trafficEncapMode: noEncap\n", Overlay.ROUTED),
])
def test_antrea_reads_its_hashed_config_map(conf, overlay):
    ds, cm = antrea(conf)
    kind = cluster([ds], [cm])
    assert (kind.cni.name, kind.cni.overlay) == (Cni.ANTREA, overlay)
    assert kind.cni.evidence[1].startswith("ConfigMap kube-system/antrea-config-h5kh69mc88 trafficEncapMode")


def test_kube_router_with_its_service_proxy_and_no_kube_proxy():
    ds = daemon_set("kube-system", "kube-router", {"k8s-app": "kube-router"}, "docker.io/cloudnativelabs/kube-router",
                    args=("--run-router=true", "--run-firewall=true", "--run-service-proxy=true"))
    kind = cluster([ds])
    assert (kind.cni.name, kind.cni.overlay) == (Cni.KUBE_ROUTER, Overlay.UNKNOWN)  # ipip across subnets only
    assert (kind.proxy.name, kind.proxy.mode, kind.proxy.confidence) == (
        ServiceProxy.KUBE_ROUTER, ProxyMode.IPVS, Confidence.HIGH)


@pytest.mark.parametrize("args, overlay", [
    (("--overlay-type", "full"), Overlay.IPIP),
    (("--enable-overlay=false",), Overlay.ROUTED),
])
def test_kube_router_overlays_and_no_service_proxy_beside_kube_proxy(args, overlay):
    ds = daemon_set("kube-system", "kube-router", {"k8s-app": "kube-router"}, args=("--run-service-proxy=false", *args))
    kind = cluster([ds, *IPTABLES_PROXY[0]], IPTABLES_PROXY[1])
    assert kind.cni.overlay is overlay and kind.proxy.name is ServiceProxy.KUBE_PROXY


def test_weave_and_canal():
    weave = cluster([daemon_set("kube-system", "weave-net", {"name": "weave-net"})])
    assert (weave.cni.name, weave.cni.overlay) == (Cni.WEAVE, Overlay.UNKNOWN)
    canal = cluster([daemon_set("kube-system", "canal", {"k8s-app": "canal"})],
                    [config_map("kube-system", "canal-config", **{"net-conf.json": FLANNEL_CONF % "vxlan"})])
    assert (canal.cni.name, canal.cni.overlay) == (Cni.CANAL, Overlay.VXLAN)


def test_an_unknown_cni_says_which_daemon_sets_were_seen():
    kind = cluster([daemon_set("kube-system", "node-exporter"), daemon_set("kube-system", "acme-net"), *NFT_PROXY[0]],
                   NFT_PROXY[1])
    assert (kind.cni.name, kind.cni.overlay, kind.cni.confidence) == (Cni.UNKNOWN, Overlay.UNKNOWN, Confidence.LOW)
    assert "DaemonSets seen: kube-system/node-exporter, kube-system/acme-net, kube-system/kube-proxy" in kind.cni.evidence[0]
    assert kind.proxy.mode is ProxyMode.NFTABLES


def test_no_kube_proxy_and_no_replacement_is_an_unknown_proxy_saying_so():
    kind = cluster([])
    assert (kind.proxy.name, kind.proxy.mode, kind.proxy.confidence) == (
        ServiceProxy.UNKNOWN, ProxyMode.UNKNOWN, Confidence.LOW)
    assert kind.proxy.evidence[0] == "no kube-proxy DaemonSet in kube-system"


def test_a_config_map_not_found_or_refused_leaves_the_overlay_unknown_and_says_why():
    ds = daemon_set("kube-flannel", "kube-flannel-ds", {"app": "flannel"}, config_maps=("kube-flannel-cfg",))
    gone = cluster([ds], missing=())
    assert gone.cni.overlay is Overlay.UNKNOWN and gone.cni.evidence[-1] == "ConfigMap kube-flannel/kube-flannel-cfg not found"
    refused = cluster([ds], missing=("kube-flannel/kube-flannel-cfg",),
                      refused={"ConfigMap kube-flannel/kube-flannel-cfg": "configmaps is forbidden"})
    assert (refused.cni.name, refused.cni.overlay) == (Cni.FLANNEL, Overlay.UNKNOWN)
    assert refused.cni.evidence[-1] == "cannot read ConfigMap kube-flannel/kube-flannel-cfg: configmaps is forbidden"


def test_kube_proxy_mode_from_its_flag_and_its_default_without_configuration():
    flagged = daemon_set("kube-system", "kube-proxy", {"k8s-app": "kube-proxy"}, args=("--proxy-mode", "ipvs"))
    assert cluster([flagged], missing=("kube-system/kube-proxy",)).proxy.mode is ProxyMode.IPVS
    bare = cluster([daemon_set("kube-system", "kube-proxy", {"k8s-app": "kube-proxy"})])
    assert (bare.proxy.mode, bare.proxy.confidence) == (ProxyMode.IPTABLES, Confidence.MEDIUM)
    assert "ConfigMap kube-system/kube-proxy not found" in bare.proxy.evidence


# --- read(): through our cluster wrapper, reading only what it needs; a 403 is an answer --------------


class FakeKube:
    """Our Kube wrapper's two reads: DaemonSets by namespace, ConfigMaps by name."""

    def __init__(self, daemon_sets=(), config_maps=(), forbid=()):
        self.daemon_sets, self.forbid, self.calls = list(daemon_sets), set(forbid), []
        self.config_maps = {(c["metadata"]["namespace"], c["metadata"]["name"]): c for c in config_maps}

    def list_objects(self, kind, namespace=None, label_selector=None, field_selector=None):
        self.calls.append((kind, namespace))
        if (kind, namespace) in self.forbid:
            raise Forbidden(f'{kind.lower()}s.apps is forbidden: User "viewer" cannot list resource "{kind.lower()}s" '
                            f'in API group "apps" in the namespace "{namespace}"', status=403)
        return [d for d in self.daemon_sets if d["metadata"]["namespace"] == namespace]

    def get_object(self, kind, namespace, name):
        self.calls.append((kind, f"{namespace}/{name}"))
        if (kind, namespace) in self.forbid:
            raise Forbidden(f'configmaps "{name}" is forbidden', status=403)
        if (namespace, name) not in self.config_maps:
            raise NotFound("ConfigMap", name, namespace, f'configmaps "{name}" not found')
        return self.config_maps[(namespace, name)]


def test_read_lists_daemon_sets_in_a_few_namespaces_and_gets_only_the_named_config_maps():
    ds, cm = cilium(**{"kube-proxy-replacement": "true"})
    kube = FakeKube([ds, daemon_set("kube-system", "node-exporter")], [cm, config_map("kube-system", "unrelated")])
    kind = read(kube)
    assert (kind.cni.name, kind.proxy.name) == (Cni.CILIUM, ServiceProxy.CILIUM)
    assert kube.calls == [("DaemonSet", "kube-system"), ("DaemonSet", "kube-flannel"), ("DaemonSet", "calico-system"),
                          ("DaemonSet", "cilium"), ("ConfigMap", "kube-system/cilium-config")]


def test_a_403_on_daemonsets_is_unknown_saying_it_cannot_read_them():
    kube = FakeKube(forbid={("DaemonSet", ns) for ns in ("kube-system", "kube-flannel", "calico-system", "cilium")})
    kind = read(kube)
    assert (kind.cni.name, kind.cni.confidence) == (Cni.UNKNOWN, Confidence.LOW)
    assert kind.cni.evidence[0].startswith('cannot read daemonsets in kube-system: daemonsets.apps is forbidden: User')
    assert (kind.proxy.name, kind.proxy.mode) == (ServiceProxy.UNKNOWN, ProxyMode.UNKNOWN)
    assert kind.proxy.evidence[0].startswith("cannot read daemonsets in kube-system")
    assert not any("no kube-proxy DaemonSet" in line for line in kind.proxy.evidence)  # unread is not absent


def test_a_403_on_config_maps_keeps_the_cni_from_its_daemon_set():
    ds = daemon_set("kube-flannel", "kube-flannel-ds", {"app": "flannel"})
    kind = read(FakeKube([ds], forbid={("ConfigMap", "kube-flannel")}))
    assert (kind.cni.name, kind.cni.overlay) == (Cni.FLANNEL, Overlay.UNKNOWN)
    assert kind.cni.evidence[-1] == 'cannot read ConfigMap kube-flannel/kube-flannel-cfg: configmaps "kube-flannel-cfg" is forbidden'


# --- the lab's objects: each dialect reads as what it is ----------------------------------------------


@pytest.mark.parametrize("cni, overlay, proxy, expected", [
    ("flannel", "vxlan", "nftables", (Cni.FLANNEL, Overlay.VXLAN, ServiceProxy.KUBE_PROXY, ProxyMode.NFTABLES)),
    ("flannel", "routed", "iptables", (Cni.FLANNEL, Overlay.ROUTED, ServiceProxy.KUBE_PROXY, ProxyMode.IPTABLES)),
    ("calico", "vxlan", "nftables", (Cni.CALICO, Overlay.VXLAN, ServiceProxy.KUBE_PROXY, ProxyMode.NFTABLES)),
    ("calico", "routed", "iptables", (Cni.CALICO, Overlay.ROUTED, ServiceProxy.KUBE_PROXY, ProxyMode.IPTABLES)),
    ("cilium", "vxlan", "none", (Cni.CILIUM, Overlay.VXLAN, ServiceProxy.CILIUM, ProxyMode.EBPF)),
    ("cilium", "routed", "nftables", (Cni.CILIUM, Overlay.ROUTED, ServiceProxy.KUBE_PROXY, ProxyMode.NFTABLES)),
])
def test_the_lab_addons_read_as_their_dialect(cni, overlay, proxy, expected):
    objects = addons.manifests(cni, overlay, proxy, nodes=2)
    kind = read(FakeKube([o for o in objects if o["kind"] == "DaemonSet"],
                         [o for o in objects if o["kind"] == "ConfigMap"]))
    assert (kind.cni.name, kind.cni.overlay, kind.proxy.name, kind.proxy.mode) == expected
    assert kind.proxy.confidence is Confidence.HIGH


def test_the_lab_addons_refuse_a_dialect_they_do_not_have():
    with pytest.raises(ValueError, match="weave"):
        addons.manifests("weave", "vxlan", "nftables", 2)


# --- refined from the nodes' devices ------------------------------------------------------------------


def iface(name, kind=InterfaceKind.DEVICE, port=None, index=[0]):
    index[0] += 1
    return Interface(index[0], name, kind, overlay_port=port)


def inventory(*interfaces, routes=()):
    return Inventory((iface("lo", InterfaceKind.LOOPBACK), iface("eth0"), *interfaces), routes=routes)


VETH, OVERLAY, BRIDGE = InterfaceKind.VETH, InterfaceKind.OVERLAY, InterfaceKind.BRIDGE
UNKNOWN_CNI = CniKind(Cni.UNKNOWN, Overlay.UNKNOWN, Confidence.LOW, ("cannot read daemonsets in kube-system: forbidden",))
UNKNOWN_PROXY = ProxyKind(ServiceProxy.UNKNOWN, ProxyMode.UNKNOWN, Confidence.LOW, ("cannot read daemonsets in kube-system",))
NFT = ProxyKind(ServiceProxy.KUBE_PROXY, ProxyMode.NFTABLES, Confidence.HIGH, ("mode: nftables",))


def kind(cni=UNKNOWN_CNI, proxy=UNKNOWN_PROXY):
    return ClusterKind(cni, proxy)


def test_flannel_vxlan_confirmed_by_flannel_1_on_the_nodes():
    api = CniKind(Cni.FLANNEL, Overlay.VXLAN, Confidence.HIGH, ("DaemonSet kube-flannel/kube-flannel-ds",))
    got = refine(kind(api, NFT), {"node-1": inventory(iface("cni0", BRIDGE), iface("flannel.1", OVERLAY, 8472)),
                                  "node-2": inventory(iface("flannel.1", OVERLAY, 8472))})
    assert (got.cni.name, got.cni.overlay, got.cni.confidence) == (Cni.FLANNEL, Overlay.VXLAN, Confidence.HIGH)
    assert got.cni.evidence[1:] == ("node-1: flannel.1 (flannel's VXLAN device)", "node-2: flannel.1 (flannel's VXLAN device)")
    assert got.proxy == NFT


def test_calico_vxlan_decided_from_devices_when_the_api_was_refused():
    got = refine(kind(), {"node-1": inventory(*(iface(f"cali{i:011x}", VETH) for i in range(5)),
                                              iface("vxlan.calico", OVERLAY, 4789))})
    assert (got.cni.name, got.cni.overlay, got.cni.confidence) == (Cni.CALICO, Overlay.VXLAN, Confidence.MEDIUM)
    assert got.cni.evidence[0] == "cannot read daemonsets in kube-system: forbidden"
    assert "… 2 more (a Calico host veth)" in got.cni.evidence
    assert "node-1: vxlan.calico (Calico's VXLAN device)" in got.cni.evidence


def test_calico_bgp_overlay_from_devices_tunl0_routes_or_none():
    api = CniKind(Cni.CALICO, Overlay.UNKNOWN, Confidence.MEDIUM, ("calico_backend: bird",))
    ipip = refine(kind(api), {"node-1": inventory(iface("cali0123456789a", VETH), iface("tunl0", OVERLAY),
                                                  routes=(Route("10.244.2.0/26", "tunl0", "172.30.0.2"),))})
    assert (ipip.cni.overlay, ipip.cni.confidence) == (Overlay.IPIP, Confidence.HIGH)
    plain = refine(kind(api), {"node-1": inventory(iface("cali0123456789a", VETH), iface("tunl0", OVERLAY))})
    assert (plain.cni.overlay, plain.cni.evidence[-1]) == (Overlay.ROUTED, "no calico tunnel device on node-1")


def test_cilium_devices_that_disagree_with_the_api_lower_the_confidence():
    api = CniKind(Cni.CILIUM, Overlay.VXLAN, Confidence.HIGH, ("cilium-config: routing-mode: tunnel",))
    got = refine(kind(api), {"node-1": inventory(iface("cilium_host"), iface("lxc0123456789ab", VETH),
                                                 iface("cilium_geneve", OVERLAY, 6081))})
    assert (got.cni.overlay, got.cni.confidence) == (Overlay.GENEVE, Confidence.MEDIUM)
    assert "but the nodes' devices say geneve, not vxlan:" in got.cni.evidence


@pytest.mark.parametrize("interfaces, expected", [
    ((iface("antrea-gw0"), iface("antrea-tun0", OVERLAY, 6081)), (Cni.ANTREA, Overlay.GENEVE)),
    ((iface("eni0123456789a", VETH),), (Cni.AWS_VPC, Overlay.ROUTED)),
    ((iface("kube-bridge", BRIDGE), iface("tun-0a1b2c3d4e5", OVERLAY)), (Cni.KUBE_ROUTER, Overlay.IPIP)),
    ((iface("weave", BRIDGE), iface("vxlan-6784", OVERLAY, 6784)), (Cni.WEAVE, Overlay.VXLAN)),
    ((iface("cali0123456789a", VETH), iface("flannel.1", OVERLAY, 8472)), (Cni.CANAL, Overlay.VXLAN)),
])
def test_each_dialect_known_by_its_devices(interfaces, expected):
    got = refine(kind(), {"node-1": inventory(*interfaces)})
    assert (got.cni.name, got.cni.overlay) == expected


def test_an_unknown_cni_with_no_known_device_lists_the_devices_seen():
    got = refine(kind(), {"node-1": inventory(iface("br-acme", BRIDGE), iface("acme0", OVERLAY))})
    assert got.cni.name is Cni.UNKNOWN
    assert got.cni.evidence[-1] == "node-1: no device of a known CNI; devices: eth0, br-acme, acme0"


def test_kube_ipvs0_tells_the_proxy_mode():
    found = refine(kind(), {"node-1": inventory(iface("kube-ipvs0"))})
    assert (found.proxy.name, found.proxy.mode, found.proxy.confidence) == (
        ServiceProxy.KUBE_PROXY, ProxyMode.IPVS, Confidence.MEDIUM)
    ipvs = ProxyKind(ServiceProxy.KUBE_PROXY, ProxyMode.IPVS, Confidence.MEDIUM, ("args --proxy-mode=ipvs",))
    assert refine(kind(proxy=ipvs), {"node-1": inventory(iface("kube-ipvs0"))}).proxy.confidence is Confidence.HIGH
    disagree = refine(kind(proxy=NFT), {"node-1": inventory(iface("kube-ipvs0"))}).proxy
    assert (disagree.mode, disagree.confidence) == (ProxyMode.NFTABLES, Confidence.MEDIUM)
    assert "node-1: kube-ipvs0 (holds the Service IPs: IPVS)" in disagree.evidence


def test_only_node_captures_count_and_an_unread_api_stays_unread():
    pod_capture = Capture("probe source", None, probe="source", inventory=inventory(iface("cali0123456789a", VETH)))
    node_capture = Capture("node-1", "node-1", inventory=inventory(iface("flannel.1", OVERLAY, 8472)))
    got = from_captures(kind(), (pod_capture, node_capture))
    assert (got.cni.name, got.cni.overlay) == (Cni.FLANNEL, Overlay.VXLAN)
    assert from_captures(None, (node_capture,)) is None
    assert from_captures(kind(), ()) == kind()
