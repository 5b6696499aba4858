"""The lab's CNI dialects on paper: their configuration, the names they give kernel objects, and the
rules their Service proxies and policy enforcers render (tests/lab/test_dialects.py sends the packets)."""

from __future__ import annotations

import hashlib
from io import StringIO

import pytest

from netdoctor.cli import main
from netdoctor.environment import Environment
from netdoctor.errors import UsageError
from netdoctor.lab.cni import Calico, Cilium
from netdoctor.lab.iptables import chain_hash, render_cilium_notrack, render_kube_proxy_iptables
from netdoctor.lab.netpol import render_calico_policy, render_cilium_policy
from netdoctor.lab.proxy import Endpoint, NodeInfo, ServicePort, render_socket_lb
from netdoctor.lab.state import Cni, LabConfig, PolicyMode, ProxyMode

NODE = NodeInfo("node-1", "172.30.0.1", "10.244.1.0/24", "10.244.0.0/16")
READY = {"ready": True, "serving": True}


def service(name, cluster_ip, ports, **spec):
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"clusterIP": cluster_ip, "ports": ports, **spec}}


def endpoint_slice(svc, ports, endpoints):
    return {"metadata": {"name": f"{svc}-x", "namespace": "default", "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "ports": ports,
            "endpoints": [{"addresses": [ip], "conditions": READY, "nodeName": node} for ip, node in endpoints]}


def pod(name, ip, labels, ports=()):
    return {"metadata": {"namespace": "default", "name": name, "labels": labels},
            "spec": {"containers": [{"name": "c", "ports": [{"name": n, "containerPort": p, "protocol": "TCP"}
                                                            for n, p in ports]}]},
            "status": {"podIP": ip, "phase": "Running"}}


WEB = pod("web", "10.244.1.11", {"app": "web"}, [("http", 8080)])
CLIENT = pod("client", "10.244.1.12", {"app": "client"})
WEB_INGRESS = {"metadata": {"namespace": "default", "name": "web-in"}, "spec": {
    "podSelector": {"matchLabels": {"app": "web"}},
    "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}], "ports": [{"port": "http"}]}]}}
CLIENT_EGRESS = {"metadata": {"namespace": "default", "name": "client-out"}, "spec": {
    "podSelector": {"matchLabels": {"app": "client"}}, "policyTypes": ["Egress"],
    "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "web"}}}]}]}}


def chain(text: str, name: str) -> str:
    assert f"chain {name} {{" in text, text
    return text.split(f"chain {name} {{")[1].split("}\n")[0]


# ---- configuration ------------------------------------------------------------------------------

def test_the_proxy_follows_the_cni_unless_asked_and_none_needs_cilium():
    assert LabConfig("a").validate().proxy_mode is ProxyMode.NFTABLES
    assert LabConfig("a", cni="calico").validate().proxy_mode is ProxyMode.NFTABLES
    cilium = LabConfig("a", cni="cilium").validate()
    assert (cilium.cni_dialect, cilium.proxy_mode, cilium.proxy) == (Cni.CILIUM, ProxyMode.NONE, "none")
    assert LabConfig("a", cni="cilium", proxy="iptables").validate().proxy_mode is ProxyMode.IPTABLES
    with pytest.raises(UsageError, match="--proxy none: calico does not translate Service IPs"):
        LabConfig("a", cni="calico", proxy="none").validate()
    with pytest.raises(UsageError, match="--cni must be flannel, calico or cilium"):
        LabConfig("a", cni="weave").validate()


def test_a_lab_written_before_dialects_is_flannel_with_kube_proxy_nftables():
    old = LabConfig("a", 2, "vxlan", "enforce", "shop")  # a config.json without cni and proxy
    assert (old.cni_dialect, old.proxy_mode, old.policy_mode) == (Cni.FLANNEL, ProxyMode.NFTABLES, PolicyMode.DROP)


def test_lab_up_help_names_the_dialects(capsys):
    env = Environment(stdout=StringIO(), stderr=StringIO(), environ={"NO_COLOR": "1"})
    assert main(["lab", "up", "--help"], env) == 0
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert "--cni" in text and "calico" in text and "cilium" in text
    assert "--proxy" in text and "nftables or iptables mode, or none" in text


def test_lab_up_refuses_proxy_none_without_cilium_in_one_line():
    err = StringIO()
    code = main(["lab", "up", "--cni", "flannel", "--proxy", "none"], Environment(stdout=StringIO(), stderr=err))
    assert code == 2 and err.getvalue().count("\n") == 1 and err.getvalue().startswith("error: --proxy none")


# ---- names ----------------------------------------------------------------------------------------

def test_host_veths_are_named_as_calico_and_cilium_name_them():
    assert Calico.host_veth("shop", "api-7d9") == "cali" + hashlib.sha1(b"shop.api-7d9").hexdigest()[:11]
    assert Cilium.host_veth("3f2a-uid") == "lxc" + hashlib.sha256(b"3f2a-uid").hexdigest()[:12]
    assert len(Calico.host_veth("shop", "api-7d9")) == len(Cilium.host_veth("x")) == 15  # IFNAMSIZ - 1


def test_kube_proxy_chain_names_are_kube_proxys():
    """The names kube-proxy's own tests expect for ns1/svc1:p80 and its endpoint 10.180.0.1:80."""
    sp = ServicePort("ns1", "svc1", "p80", "TCP", "172.30.0.41", 80, None, False, False, None, (), ())
    assert chain_hash(sp) == "XPGD46QRK7WJZT7O"
    assert chain_hash(sp, Endpoint("10.180.0.1", 80)) == "SXIVWICOYRO3J4NJ"


# ---- kube-proxy, iptables mode --------------------------------------------------------------------

def test_iptables_mode_balances_with_statistic_and_rejects_a_service_without_endpoints():
    svcs = [service("web", "10.96.0.20", [{"name": "http", "port": 80}]),
            service("empty", "10.96.0.21", [{"port": 53, "protocol": "UDP"}])]
    slices = [endpoint_slice("web", [{"name": "http", "port": 8080}],
                             [("10.244.1.5", "node-1"), ("10.244.2.5", "node-2"), ("10.244.2.6", "node-2")])]
    text = render_kube_proxy_iptables(svcs, slices, NODE)
    filter_table, nat = text.split("*nat\n")
    svc = "KUBE-SVC-" + chain_hash(ServicePort("default", "web", "http", "TCP", "10.96.0.20", 80, None, False,
                                               False, None, (), ()))
    assert (f'-A KUBE-SERVICES -m comment --comment "default/web:http cluster IP" -m tcp -p tcp -d 10.96.0.20 '
            f"--dport 80 -j {svc}") in nat
    picks = [line for line in nat.splitlines() if line.startswith(f"-A {svc}") and "KUBE-SEP-" in line]
    assert ["0.3333333333" in picks[0], "0.5000000000" in picks[1], "statistic" not in picks[2]] == [True] * 3
    assert "-j DNAT --to-destination 10.244.2.6:8080" in nat
    assert ('-A KUBE-SERVICES -m comment --comment "default/empty has no endpoints" -m udp -p udp -d 10.96.0.21 '
            "--dport 53 -j REJECT") in filter_table
    assert "-A KUBE-POSTROUTING -m comment --comment \"kubernetes service traffic requiring SNAT\" -j MASQUERADE" in nat


def test_iptables_mode_drops_local_policy_without_local_endpoint_and_keeps_affinity_with_recent():
    svcs = [service("loc", "10.96.0.22", [{"port": 80}], internalTrafficPolicy="Local"),
            service("sticky", "10.96.0.23", [{"port": 80}], sessionAffinity="ClientIP")]
    slices = [endpoint_slice("loc", [{"port": 8080}], [("10.244.2.5", "node-2")]),
              endpoint_slice("sticky", [{"port": 8080}], [("10.244.1.5", "node-1")])]
    text = render_kube_proxy_iptables(svcs, slices, NODE)
    assert '--comment "default/loc has no local endpoints" -m tcp -p tcp -d 10.96.0.22 --dport 80 -j DROP' in text
    assert "--rcheck --seconds 10800 --reap -j KUBE-SEP-" in text
    assert "-m recent --name KUBE-SEP-" in text
    assert "--set -m tcp -p tcp -j DNAT --to-destination 10.244.1.5:8080" in text


def test_cilium_notrack_spares_traffic_with_the_node_itself():
    text = render_cilium_notrack("10.244.0.0/16")
    assert ('-A CILIUM_PRE_raw -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment "cilium: NOTRACK for pod '
            'traffic" -j CT --notrack') in text
    assert text.startswith("*raw\n")


# ---- Cilium's socket LB ---------------------------------------------------------------------------

def test_socket_lb_translates_on_the_output_hook_only_and_refuses_a_service_without_backend():
    svcs = [service("web", "10.96.0.20", [{"port": 80, "nodePort": 30080}], type="NodePort"),
            service("empty", "10.96.0.21", [{"port": 80}])]
    slices = [endpoint_slice("web", [{"port": 8080}], [("10.244.2.5", "node-2")])]
    text = render_socket_lb("socket-lb", svcs, slices, NODE)
    hooks = [line.strip() for line in text.splitlines() if "hook" in line]
    assert hooks == ["type filter hook output priority -110; policy accept;",
                     "type nat hook output priority -100; policy accept;"]
    assert "dnat to 10.244.2.5:8080" in text and "masquerade" not in text and "30080" not in text
    assert "10.96.0.21 . tcp . 80 : goto no-backend" in text
    assert chain(text, "no-backend").strip() == "reject with icmp type host-unreachable"


# ---- policy, per dialect --------------------------------------------------------------------------

def test_calico_policy_is_per_workload_interface_and_drops_or_rejects_at_its_end():
    endpoints = [(WEB, "caliweb"), (CLIENT, "caliclient")]
    text = render_calico_policy(endpoints, [WEB, CLIENT], [], [WEB_INGRESS])
    assert '"caliweb" : goto filter-cali-tw-caliweb' in text and '"caliclient" : goto filter-cali-fw-caliclient' in text
    web_in = chain(text, "filter-cali-tw-caliweb")
    assert "meta l4proto tcp ip daddr . th dport { 10.244.1.11 . 8080 } return" in web_in
    assert web_in.strip().endswith('counter drop comment "Drop if no policies passed packet"')
    assert chain(text, "filter-cali-tw-caliclient").strip().endswith("return")  # no policy: its profile allows
    rejecting = render_calico_policy(endpoints, [WEB, CLIENT], [], [WEB_INGRESS], PolicyMode.REJECT)
    assert chain(rejecting, "filter-cali-tw-caliweb").strip().endswith(
        'counter reject comment "Drop if no policies passed packet"')


def test_cilium_policy_sits_on_the_lxc_hooks_and_rejects_egress_denies_only():
    endpoints = [(WEB, "lxcweb"), (CLIENT, "lxcclient")]
    hosts = ("10.244.1.1", "172.30.0.1")
    text = render_cilium_policy(endpoints, [WEB, CLIENT], [], [WEB_INGRESS, CLIENT_EGRESS], hosts, PolicyMode.REJECT)
    assert 'type filter hook ingress devices = { "lxcclient", "lxcweb" }' in chain(text, "from-container")
    assert 'type filter hook egress devices = { "lxcclient", "lxcweb" }' in chain(text, "to-container")
    assert chain(text, "egress").strip().endswith(
        'counter reject with icmp type admin-prohibited comment "Policy denied"')
    assert chain(text, "ingress").strip().endswith('counter drop comment "Policy denied"')
    assert "ip saddr { 10.244.1.12 } ip daddr { 10.244.1.11 } goto allow-egress" in chain(text, "egress")
    dropping = render_cilium_policy(endpoints, [WEB, CLIENT], [], [CLIENT_EGRESS], hosts)
    assert chain(dropping, "egress").strip().endswith('counter drop comment "Policy denied"')
    assert "hook" not in render_cilium_policy([], [WEB], [], [], hosts)  # no endpoint, no device to hook
