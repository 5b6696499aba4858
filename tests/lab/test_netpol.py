"""NetworkPolicy renderer: its nftables text, and allowed/denied flows through a real node namespace."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import threading

import pytest

from netdoctor.lab.netpol import render_policy

from labkit import in_netns


def pod(name, ip, labels, ns="default", ports=()):
    return {"metadata": {"namespace": ns, "name": name, "labels": labels},
            "spec": {"containers": [{"name": "c", "ports": [
                {"name": n, "containerPort": p, "protocol": proto} for n, proto, p in ports]}]},
            "status": {"podIP": ip, "phase": "Running"}}


def policy(name, spec, ns="default"):
    return {"metadata": {"namespace": ns, "name": name}, "spec": spec}


WEB = pod("web", "10.244.1.11", {"app": "web"}, ports=[("http", "TCP", 8080), ("metrics", "TCP", 9090)])
CLIENT_A = pod("a", "10.244.1.12", {"app": "a"})
CLIENT_B = pod("b", "10.244.1.13", {"app": "b"})
REMOTE = pod("r", "10.244.2.7", {"app": "r"}, ns="other")
PODS = [WEB, CLIENT_A, CLIENT_B, REMOTE]
NAMESPACES = [{"metadata": {"name": "default"}}, {"metadata": {"name": "other", "labels": {"team": "x"}}}]
WEB_INGRESS = policy("web-in", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [
    {"from": [{"podSelector": {"matchLabels": {"app": "a"}}}], "ports": [{"port": "http"}, {"port": 9090}]}]})
A_EGRESS = policy("a-out", {"podSelector": {"matchLabels": {"app": "a"}}, "egress": [
    {"to": [{"podSelector": {"matchLabels": {"app": "web"}}}], "ports": [{"port": 8080}]}]})


def chain(text, name):
    return text.split(f"chain {name} {{")[1].split("}\n")[0]


# ---- rendered text ------------------------------------------------------------------------

def test_unselected_pods_are_not_isolated():
    text = render_policy("np", PODS[:3], PODS, NAMESPACES, [])
    assert "elements" not in text
    assert "ct state established,related accept" in text


def test_named_port_resolves_on_the_destination_pod():
    text = render_policy("np", PODS[:3], PODS, NAMESPACES, [WEB_INGRESS])
    ingress = chain(text, "ingress")
    assert "ip saddr { 10.244.1.12 } meta l4proto tcp ip daddr . th dport { 10.244.1.11 . 8080 } accept" in ingress
    assert "meta l4proto tcp th dport { 9090 } accept" in ingress
    assert "set ingress-isolated {\n\t\ttype ipv4_addr\n\t\telements = { 10.244.1.11 }" in text


def test_namespace_and_pod_selector_in_one_peer_are_anded():
    pol = policy("p", {"podSelector": {}, "ingress": [{"from": [
        {"namespaceSelector": {"matchLabels": {"team": "x"}}, "podSelector": {"matchLabels": {"app": "r"}}},
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "other"}},
         "podSelector": {"matchLabels": {"app": "nope"}}}]}]})
    ingress = chain(render_policy("np", PODS[:3], PODS, NAMESPACES, [pol]), "ingress")
    assert "ip saddr { 10.244.2.7 } accept" in ingress


def test_ip_block_except_ports_ranges_and_protocols():
    pol = policy("p", {"podSelector": {"matchLabels": {"app": "web"}}, "ingress": [{
        "from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": ["10.128.0.0/9"]}}],
        "ports": [{"port": 80}, {"port": 70, "endPort": 90}, {"protocol": "UDP"}, {"protocol": "SCTP", "port": 9}]}]})
    ingress = chain(render_policy("np", PODS[:3], PODS, NAMESPACES, [pol]), "ingress")
    assert "ip saddr { 10.0.0.0/9 } meta l4proto tcp th dport { 70-90 } accept" in ingress
    assert "meta l4proto udp accept" in ingress
    assert "meta l4proto sctp th dport { 9 } accept" in ingress


def test_egress_defaults_and_empty_rules():
    deny_all = policy("deny", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
    text = render_policy("np", PODS[:3], PODS, NAMESPACES, [deny_all])
    assert chain(text, "ingress").strip().startswith("counter drop")
    assert chain(text, "egress").strip().startswith("counter drop")
    text = render_policy("np", PODS[:3], PODS, NAMESPACES, [A_EGRESS])
    assert "set egress-isolated {\n\t\ttype ipv4_addr\n\t\telements = { 10.244.1.12 }" in text
    assert "return comment \"default/a-out egress[0]\"" in text
    allow_all = policy("all", {"podSelector": {}, "ingress": [{}]})
    assert "ip daddr { 10.244.1.11, 10.244.1.12, 10.244.1.13 } accept" in render_policy(
        "np", PODS[:3], PODS, NAMESPACES, [allow_all])


# ---- real namespaces ----------------------------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft"), reason="needs root and nft")


def sh(*args: str, stdin: str | None = None) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True, input=stdin)


def fetch(host: str, port: int, timeout: float = 0.4) -> str:
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            return conn.recv(100).decode()
    except TimeoutError:
        return "timeout"


def serve(srv: socket.socket, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            conn, _ = srv.accept()
        except TimeoutError:
            continue
        with conn:
            conn.sendall(b"hello")


@pytest.fixture
def node():
    """A node namespace with a bridge and pods web, a, b on it; everything removed afterwards."""
    prefix = f"ndt{secrets.token_hex(3)}"
    names = {"node": f"{prefix}-node"}
    stop, servers = threading.Event(), []
    try:
        sh("ip", "netns", "add", names["node"])
        sh("ip", "-n", names["node"], "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", names["node"], "addr", "add", "10.244.1.1/24", "dev", "br0")
        sh("ip", "-n", names["node"], "link", "set", "br0", "up")
        for p in PODS[:3]:
            ns, ip = f"{prefix}-{p['metadata']['name']}", p["status"]["podIP"]
            names[p["metadata"]["name"]] = ns
            sh("ip", "netns", "add", ns)
            veth = f"v{ip.split('.')[-1]}"
            sh("ip", "-n", names["node"], "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "-n", names["node"], "link", "set", veth, "master", "br0", "up")
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
        for port in (8080, 9090):
            srv = in_netns(names["web"], socket.create_server, ("0.0.0.0", port))
            srv.settimeout(0.1)
            thread = threading.Thread(target=serve, args=(srv, stop))
            thread.start()
            servers.append((srv, thread))
        yield names
    finally:
        stop.set()
        for srv, thread in servers:
            thread.join()
            srv.close()
        for ns in reversed(names.values()):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@needs_root
@pytest.mark.lab
def test_policy_allows_and_drops_real_flows(node):
    nft = ["ip", "netns", "exec", node["node"], "nft"]
    script = render_policy("netpol", PODS[:3], PODS, NAMESPACES, [WEB_INGRESS, A_EGRESS])
    sh(*nft, "-c", "-f", "-", stdin=script)
    sh(*nft, "-f", "-", stdin=script)
    sh(*nft, "-f", "-", stdin=script)  # idempotent
    assert in_netns(node["a"], fetch, "10.244.1.11", 8080) == "hello"  # allowed both ways, replies pass
    assert in_netns(node["a"], fetch, "10.244.1.11", 9090) == "timeout"  # ingress allows, egress doesn't
    assert in_netns(node["b"], fetch, "10.244.1.11", 8080) == "timeout"  # ingress denies
    assert in_netns(node["node"], fetch, "10.244.1.11", 9090) == "hello"  # the node itself: always allowed
    sh(*nft, "-f", "-", stdin=render_policy("netpol", PODS[:3], PODS, NAMESPACES, []))
    assert in_netns(node["b"], fetch, "10.244.1.11", 8080) == "hello"
