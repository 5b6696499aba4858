"""kube-proxy renderer: what it programs, its nftables text, and real packets through it."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import threading

import pytest

from netdoctor.lab.proxy import Endpoint, NodeInfo, programmed_services, render_kube_proxy

from labkit import in_netns

NODE = NodeInfo("node-1", "192.168.50.11", "10.244.1.0/24", "10.244.0.0/16")


def service(name, cluster_ip, ports, **spec):
    return {"metadata": {"name": name, "namespace": "default"},
            "spec": {"clusterIP": cluster_ip, "ports": ports, **spec}}


def endpoint_slice(svc, ports, endpoints):
    return {"metadata": {"name": f"{svc}-x", "namespace": "default",
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "ports": ports,
            "endpoints": [{"addresses": [ip], "conditions": cond, "nodeName": node} for ip, cond, node in endpoints]}


READY, NOT_READY = {"ready": True, "serving": True}, {"ready": False, "serving": False}
TERMINATING = {"ready": False, "serving": True, "terminating": True}


# ---- what gets programmed ------------------------------------------------------------------

def test_named_target_port_resolves_through_the_slice_and_only_ready_endpoints_count():
    svcs = [service("web", "10.96.0.20", [{"name": "http", "port": 80, "targetPort": "http"}])]
    slices = [endpoint_slice("web", [{"name": "http", "port": 8080, "protocol": "TCP"}], [
        ("10.244.1.5", READY, "node-1"), ("10.244.2.5", {}, "node-2"), ("10.244.2.6", NOT_READY, "node-2")])]
    [sp] = programmed_services(svcs, slices)
    assert (sp.key, sp.port, sp.endpoints) == (
        "default/web/tcp/http", 80, (Endpoint("10.244.1.5", 8080, "node-1"), Endpoint("10.244.2.5", 8080, "node-2")))


def test_terminating_endpoints_are_a_fallback_and_publish_not_ready_takes_all():
    ports = [{"port": 80}]
    slices = [endpoint_slice("a", [{"port": 80}], [("10.244.1.5", TERMINATING, "n"), ("10.244.1.6", NOT_READY, "n")]),
              endpoint_slice("b", [{"port": 80}], [("10.244.1.7", NOT_READY, "n")])]
    svcs = [service("a", "10.96.0.1", ports), service("b", "10.96.0.2", ports, publishNotReadyAddresses=True)]
    got = {sp.service: [str(e) for e in sp.endpoints] for sp in programmed_services(svcs, slices)}
    assert got == {"a": ["10.244.1.5:80"], "b": ["10.244.1.7:80"]}


def test_headless_and_external_name_services_get_no_rules():
    svcs = [service("h", "None", [{"port": 80}]),
            {"metadata": {"name": "x", "namespace": "default"}, "spec": {"type": "ExternalName", "externalName": "e.com"}}]
    assert programmed_services(svcs, []) == []
    assert "10.96" not in render_kube_proxy("kp", svcs, [], NODE)


def test_rendered_rules_balance_dnat_reject_and_masquerade():
    svcs = [service("web", "10.96.0.20", [{"name": "http", "port": 80, "nodePort": 30080}], type="NodePort"),
            service("empty", "10.96.0.21", [{"port": 53, "protocol": "UDP"}])]
    slices = [endpoint_slice("web", [{"name": "http", "port": 8080}],
                             [("10.244.1.5", READY, "node-1"), ("10.244.2.5", READY, "node-2")])]
    text = render_kube_proxy("kp", svcs, slices, NODE)
    assert text.startswith("table ip kp {}\ndelete table ip kp\ntable ip kp {")
    assert "10.96.0.20 . tcp . 80 : goto service-" in text
    assert "numgen random mod 2 vmap { 0 : goto endpoint-" in text
    assert "meta l4proto tcp dnat to 10.244.2.5:8080" in text
    assert "ip saddr 10.244.1.5 jump mark-for-masquerade" in text  # hairpin
    assert "10.96.0.21 . udp . 53 : goto reject-chain" in text
    assert "tcp . 30080 : goto external-" in text
    assert "type nat hook output priority -100;" in text


def test_external_traffic_policy_local_without_local_endpoint_drops_nodeport():
    svcs = [service("web", "10.96.0.20", [{"port": 80, "nodePort": 30080}], type="NodePort",
                    externalTrafficPolicy="Local")]
    slices = [endpoint_slice("web", [{"port": 8080}], [("10.244.2.5", READY, "node-2")])]
    text = render_kube_proxy("kp", svcs, slices, NODE)
    assert "tcp . 30080 : goto drop-chain" in text
    assert "10.96.0.20 . tcp . 80 : goto service-" in text


# ---- real namespaces ----------------------------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft"), reason="needs root and nft")


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, text=True)


class Bridge:
    """One node namespace with a bridge and pod namespaces on it; `close` removes them all."""

    def __init__(self):
        self.prefix = f"ndt{secrets.token_hex(3)}"
        self.node = f"{self.prefix}-node"
        self.namespaces: list[str] = []
        self.stop = threading.Event()
        self.servers: list[tuple[socket.socket, threading.Thread]] = []
        self._add_ns(self.node)
        sh("ip", "-n", self.node, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", self.node, "addr", "add", "10.244.1.1/24", "dev", "br0")
        sh("ip", "-n", self.node, "link", "set", "br0", "up")
        sh("ip", "-n", self.node, "route", "add", "default", "dev", "br0")
        sh("ip", "netns", "exec", self.node, "sysctl", "-qw", "net.ipv4.ip_forward=1")

    def _add_ns(self, name: str) -> None:
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")

    def pod(self, name: str, ip: str, hairpin: bool = False) -> str:
        ns, veth = f"{self.prefix}-{name}", f"v{ip.split('.')[-1]}"
        self._add_ns(ns)
        sh("ip", "-n", self.node, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
        sh("ip", "-n", self.node, "link", "set", veth, "master", "br0", "up")
        if hairpin:
            sh("ip", "netns", "exec", self.node, "bridge", "link", "set", "dev", veth, "hairpin", "on")
        sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        sh("ip", "-n", ns, "route", "add", "default", "via", "10.244.1.1")
        return ns

    def listen(self, ns: str, port: int, reply: str) -> None:
        """A TCP server in `ns` answering every connection with `<reply> <peer ip>`."""
        srv = in_netns(ns, socket.create_server, ("0.0.0.0", port))
        srv.settimeout(0.1)
        thread = threading.Thread(target=self._serve, args=(srv, reply))
        thread.start()
        self.servers.append((srv, thread))

    def _serve(self, srv: socket.socket, reply: str) -> None:
        while not self.stop.is_set():
            try:
                conn, peer = srv.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(f"{reply} {peer[0]}".encode())

    def nft(self, script: str) -> None:
        subprocess.run(["ip", "netns", "exec", self.node, "nft", "-f", "-"], input=script, check=True,
                       capture_output=True, text=True)

    def close(self) -> None:
        self.stop.set()
        for srv, thread in self.servers:
            thread.join()
            srv.close()
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def fetch(host: str, port: int, timeout: float = 0.5) -> str:
    """What the server said, or 'refused' / 'timeout'."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            return conn.recv(100).decode()
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "timeout"


@pytest.fixture
def bridge():
    topo = Bridge()
    try:
        yield topo
    finally:
        topo.close()


@needs_root
@pytest.mark.lab
def test_script_passes_nft_check_and_applies_twice(bridge):
    svcs = [service("web", "10.96.0.20", [{"name": "http", "port": 80, "nodePort": 30080}], type="LoadBalancer")]
    slices = [endpoint_slice("web", [{"name": "http", "port": 8080}], [("10.244.1.5", READY, "node-1")])]
    script = render_kube_proxy("kube-proxy", svcs, slices, NODE)
    subprocess.run(["ip", "netns", "exec", bridge.node, "nft", "-c", "-f", "-"], input=script, check=True, text=True)
    bridge.nft(script)
    bridge.nft(render_kube_proxy("kube-proxy", [], [], NODE))


@needs_root
@pytest.mark.lab
def test_cluster_ip_balances_rejects_hairpins_and_serves_nodeports(bridge):
    client = bridge.pod("client", "10.244.1.10")
    b1 = bridge.pod("b1", "10.244.1.11", hairpin=True)
    b2 = bridge.pod("b2", "10.244.1.12")
    bridge.listen(b1, 8080, "b1")
    bridge.listen(b2, 8080, "b2")
    svcs = [service("web", "10.96.0.20", [{"name": "http", "port": 80, "targetPort": "http", "nodePort": 30080}],
                    type="NodePort"),
            service("solo", "10.96.0.21", [{"port": 81}]),
            service("empty", "10.96.0.22", [{"port": 80}])]
    slices = [endpoint_slice("web", [{"name": "http", "port": 8080}],
                             [("10.244.1.11", READY, "node-1"), ("10.244.1.12", READY, "node-1")]),
              endpoint_slice("solo", [{"port": 8080}], [("10.244.1.11", READY, "node-1")]),
              endpoint_slice("empty", [{"port": 8080}], [("10.244.1.12", NOT_READY, "node-1")])]
    bridge.nft(render_kube_proxy("kube-proxy", svcs, slices, NODE))

    answers = in_netns(client, lambda: [fetch("10.96.0.20", 80) for _ in range(24)])
    assert {a.split()[0] for a in answers} == {"b1", "b2"}
    assert {a.split()[1] for a in answers} == {"10.244.1.10"}  # pod traffic keeps its source
    assert in_netns(client, fetch, "10.96.0.22", 80) == "refused"
    assert in_netns(client, fetch, "10.96.0.20", 99) == "refused"  # ClusterIP, undeclared port
    assert in_netns(b1, fetch, "10.96.0.21", 81) == "b1 10.244.1.1"  # hairpin, masqueraded
    assert in_netns(client, fetch, "10.244.1.1", 30080).split()[1] == "10.244.1.1"  # NodePort, masqueraded
    assert in_netns(bridge.node, fetch, "10.96.0.21", 81).startswith("b1")  # node-local via nat output
