"""NetworkPolicy renderer: its nftables text, and allowed/denied flows through a real node namespace;
in reject mode (kube-router's way), the ICMP errors a real node sends, read from the real packets of
a lab: who sends them (the bridge, the remote node's flannel.1, the ClusterIP), for TCP, UDP and
ping, and the kernel's default ICMP rate limit eating them."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import struct
import subprocess
import threading
from dataclasses import dataclass
from io import StringIO

import pytest

from netdoctor.cli import main
from netdoctor.environment import Environment
from netdoctor.errors import UsageError
from netdoctor.lab import lifecycle
from netdoctor.lab.netpol import render_policy
from netdoctor.lab.sh import socket_in
from netdoctor.lab.state import LabConfig, PolicyMode

from labkit import in_netns, run_in, start, unique_name


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


def chain_named(text, name):
    assert f"chain {name} {{" in text, text
    return chain(text, name)


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


def test_reject_mode_gives_each_isolated_pod_a_kube_router_chain_that_rejects():
    text = render_policy("np", PODS[:3], PODS, NAMESPACES, [WEB_INGRESS, A_EGRESS], PolicyMode.REJECT)
    web, a = (chain_named(text, f"KUBE-POD-FW-{h}") for h in ("EA7WP5VACSZEGVDJ", "JWDFVDRJ7ROGHPUU"))
    assert "ip daddr { 10.244.1.11 } ip saddr { 10.244.1.12 } meta l4proto tcp th dport { 9090 } accept" in web
    assert web.strip().endswith('counter reject with icmp type port-unreachable '
                                'comment "rule to REJECT traffic of POD default/web"')
    # a is isolated both ways (A_EGRESS has egress rules, so Ingress too): one chain, both jumps
    assert "ip saddr { 10.244.1.12 } ip daddr { 10.244.1.11 } meta l4proto tcp th dport { 8080 } return" in a
    assert "10.244.1.12 : jump KUBE-POD-FW-JWDFVDRJ7ROGHPUU" in text.split("map egress-isolated")[1].split("}")[0]
    assert "10.244.1.11 : jump KUBE-POD-FW-EA7WP5VACSZEGVDJ" in text.split("map ingress-isolated")[1].split("}\n")[0]
    forward = chain(text, "KUBE-ROUTER-FORWARD")
    assert forward.index("ct state established,related accept") < forward.index("vmap @egress-isolated") \
        < forward.index("vmap @ingress-isolated")
    assert "drop" not in text and "KUBE-POD-FW" not in render_policy("np", PODS[:3], PODS, NAMESPACES, [WEB_INGRESS])


def test_reject_mode_rules_name_only_the_chains_own_pod():
    """A policy selecting several pods: each pod's chain matches that pod alone, so an ingress rule
    of a neighbour can't pass this pod's egress check."""
    both = policy("both", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                           "ingress": [{"from": [{"podSelector": {}}]}], "egress": [{"to": [{"podSelector": {}}]}]})
    text = render_policy("np", PODS[:3], PODS, NAMESPACES, [both], PolicyMode.REJECT)
    chains = text.split("chain KUBE-POD-FW-")[1:]
    assert len(chains) == 3
    for pod_ip, body in zip(("10.244.1.11", "10.244.1.12", "10.244.1.13"), chains):
        assert f"ip daddr {{ {pod_ip} }} ip saddr" in body and f"ip saddr {{ {pod_ip} }} ip daddr" in body


def test_policy_mode_option_keeps_enforce_as_drop(capsys):
    assert LabConfig("a", policy="enforce").validate().policy == "drop"
    assert LabConfig("a", policy="reject").validate().policy_mode is PolicyMode.REJECT
    assert LabConfig("a", policy="enforce").policy_mode is PolicyMode.DROP  # a lab written before `reject`
    assert LabConfig("a").validate().policy_mode is PolicyMode.DROP
    with pytest.raises(UsageError, match="drop, reject or off"):
        LabConfig("a", policy="deny").validate()
    assert main(["lab", "up", "--help"], Environment(stdout=StringIO(), stderr=StringIO())) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert all(word in help_text for word in ("drop", "reject", "ICMP", "kube-router", "'enforce' means drop")), help_text


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
    except ConnectionRefusedError:
        return "refused"


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


@needs_root
@pytest.mark.lab
def test_policy_allows_and_rejects_real_flows(node):
    """Reject mode on the same node: denied flows are refused by the node, from its bridge address."""
    sh("ip", "netns", "exec", node["node"], "nft", "-f", "-",
       stdin=render_policy("netpol", PODS[:3], PODS, NAMESPACES, [WEB_INGRESS, A_EGRESS], PolicyMode.REJECT))
    assert in_netns(node["a"], fetch, "10.244.1.11", 8080) == "hello"
    with IcmpListener(node["b"]) as icmp:
        assert in_netns(node["b"], fetch, "10.244.1.11", 8080) == "refused"  # ingress denies
        assert icmp.errors() == [IcmpError("10.244.1.1", 3, 3, "10.244.1.11", "tcp", 8080)]
    with IcmpListener(node["a"]) as icmp:
        assert in_netns(node["a"], fetch, "10.244.1.11", 9090) == "refused"  # a's egress denies
        assert icmp.errors() == [IcmpError("10.244.1.1", 3, 3, "10.244.1.11", "tcp", 9090)]
    assert in_netns(node["node"], fetch, "10.244.1.11", 9090) == "hello"


# ---- reject mode in a lab: the errors a real node sends ------------------------------------

@dataclass(frozen=True)
class IcmpError:
    sender: str
    type: int
    code: int
    quoted_dst: str
    quoted_proto: str
    quoted_dport: int | None


class IcmpListener:
    """A raw ICMP socket in a pod: every ICMP message that reaches the pod, as the pod received it."""

    def __init__(self, netns: str):
        self._sock = in_netns(netns, socket.socket, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._sock.close()

    def errors(self, wait: float = 0.5) -> list[IcmpError]:
        """The ICMP errors received so far (waiting up to `wait` seconds for the first one)."""
        self._sock.settimeout(wait)
        found = []
        try:
            while True:
                found += [e for e in [_icmp_error(self._sock.recv(2000))] if e]
                self._sock.settimeout(0.1)
        except TimeoutError:
            return found


def _icmp_error(packet: bytes) -> IcmpError | None:
    outer = (packet[0] & 15) * 4
    kind, code = packet[outer], packet[outer + 1]
    if kind not in (3, 11, 12):  # not an error (an echo reply, say)
        return None
    inner = packet[outer + 8:]
    inner_len, proto = (inner[0] & 15) * 4, inner[9]
    dport = struct.unpack("!H", inner[inner_len + 2:inner_len + 4])[0] if proto in (6, 17) else None
    return IcmpError(socket.inet_ntoa(packet[12:16]), kind, code, socket.inet_ntoa(inner[16:20]),
                     {1: "icmp", 6: "tcp", 17: "udp"}.get(proto, str(proto)), dport)


def connect(netns: str, ip: str, port: int, timeout: float = 0.5) -> str:
    """'ok', 'refused' or 'timeout' for one TCP connect from `netns`, non-blocking as curl's is
    (a blocking connect on this one machine handles the ICMP error while it still holds its
    socket, and learns of the refusal only from the SYN's retransmission a second later)."""
    sock = socket_in(netns)
    sock.settimeout(timeout)
    try:
        sock.connect((ip, port))
        return "ok"
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "timeout"
    finally:
        sock.close()


def dns_query(netns: str, server: str, timeout: float = 0.5) -> str:
    """'answer', 'refused' or 'timeout' for one DNS query over UDP from `netns`."""
    import dns.message

    sock = socket_in(netns, kind=socket.SOCK_DGRAM)
    sock.settimeout(timeout)
    try:
        sock.connect((server, 53))
        sock.send(dns.message.make_query("kube-dns.kube-system.svc.cluster.local.", "A").to_wire())
        sock.recv(512)
        return "answer"
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "timeout"
    finally:
        sock.close()


@pytest.fixture(scope="module")
def reject_lab():
    running = start(LabConfig(unique_name(), policy="reject"))
    yield running
    lifecycle.down(running.name)


@dataclass(frozen=True)
class Shop:
    """The shop in a lab as these tests use it: toolbox (ops) is denied into the api pods, frontend
    is allowed; one api pod runs on toolbox's node, the other across the overlay."""

    toolbox: object
    frontend: object
    db: object
    api_here: object
    api_there: object
    cluster_ip: str
    dns_pod: object


def shop(lab) -> Shop:
    v1, _ = lab.api()

    def one(namespace: str, selector: str):
        return lab.pods(namespace, selector)[0]

    toolbox = one("ops", "app=toolbox")
    apis = lab.pods("shop", "app=api")
    here = [p for p in apis if p.spec.node_name == toolbox.spec.node_name]
    there = [p for p in apis if p.spec.node_name != toolbox.spec.node_name]
    assert len(here) == len(there) == 1, [(p.metadata.name, p.spec.node_name) for p in apis]
    return Shop(toolbox, one("shop", "app=frontend"), one("shop", "app=db"), here[0], there[0],
                v1.read_namespaced_service("api", "shop").spec.cluster_ip, one("kube-system", "k8s-app=kube-dns"))


def node_index(pod) -> int:
    return int(pod.spec.node_name.split("-")[1])


def bridge_address(pod) -> str:
    return f"10.244.{node_index(pod)}.1"  # cni0 of the pod's node


def flannel_address(pod) -> str:
    return f"10.244.{node_index(pod)}.0"  # flannel.1 of the pod's node


def egress_isolated(lab, pod) -> bool:
    """Whether the pod's node has its egress policy chain (read without sending a packet: each
    refused one spends the node's ICMP error budget for the client)."""
    table = run_in(f"nd-{lab.name}-{pod.spec.node_name}", "nft", "list", "map", "ip", "netpol", "egress-isolated")
    return f"{pod.status.pod_ip} : jump KUBE-POD-FW-" in table.stdout


@needs_root
@pytest.mark.lab
def test_reject_mode_same_node_error_comes_from_the_bridge(reject_lab):
    s = shop(reject_lab)
    with IcmpListener(reject_lab.netns(s.toolbox)) as icmp:
        assert connect(reject_lab.netns(s.toolbox), s.api_here.status.pod_ip, 8080) == "refused"
        assert icmp.errors() == [IcmpError(bridge_address(s.api_here), 3, 3, s.api_here.status.pod_ip, "tcp", 8080)]


@needs_root
@pytest.mark.lab
def test_reject_mode_cross_node_error_comes_back_from_the_remote_flannel_address(reject_lab):
    s = shop(reject_lab)
    with IcmpListener(reject_lab.netns(s.toolbox)) as icmp:
        assert connect(reject_lab.netns(s.toolbox), s.api_there.status.pod_ip, 8080) == "refused"
        assert icmp.errors() == [IcmpError(flannel_address(s.api_there), 3, 3, s.api_there.status.pod_ip, "tcp", 8080)]


@needs_root
@pytest.mark.lab
def test_reject_mode_cluster_ip_error_has_the_cluster_ip_as_sender(reject_lab):
    """conntrack reverses the Service's NAT on the related ICMP error, whichever pod's node rejected."""
    s = shop(reject_lab)
    with IcmpListener(reject_lab.netns(s.toolbox)) as icmp:
        assert [connect(reject_lab.netns(s.toolbox), s.cluster_ip, 80) for _ in range(2)] == ["refused"] * 2
        assert icmp.errors() == [IcmpError(s.cluster_ip, 3, 3, s.cluster_ip, "tcp", 80)] * 2


@needs_root
@pytest.mark.lab
def test_reject_mode_lets_allowed_traffic_pass(reject_lab):
    s = shop(reject_lab)
    frontend, toolbox = reject_lab.netns(s.frontend), reject_lab.netns(s.toolbox)
    for api in (s.api_here, s.api_there):
        assert connect(frontend, api.status.pod_ip, 8080) == "ok"
    assert [connect(frontend, s.cluster_ip, 80) for _ in range(4)] == ["ok"] * 4
    assert connect(toolbox, s.frontend.status.pod_ip, 8080) == "ok"  # frontend is not isolated
    assert dns_query(toolbox, "10.96.0.10") == "answer"  # UDP through the Service, and to the pod
    assert dns_query(toolbox, s.dns_pod.status.pod_ip) == "answer"


@needs_root
@pytest.mark.lab
def test_reject_mode_answers_ping_with_port_unreachable_like_kube_router(reject_lab):
    """kube-router's REJECT has no --reject-with: ICMP port unreachable for every protocol."""
    s = shop(reject_lab)
    proc = run_in(reject_lab.netns(s.toolbox), "ping", "-c1", "-W1", s.api_there.status.pod_ip)
    assert proc.returncode != 0
    assert f"From {flannel_address(s.api_there)} icmp_seq=1 Destination Port Unreachable" in proc.stdout, proc.stdout


@needs_root
@pytest.mark.lab
def test_reject_mode_rejects_denied_udp_egress_at_the_source_node(reject_lab):
    """An egress policy that forgets DNS: the source's own node rejects the query, from its
    bridge (to the pod IP) or as the ClusterIP (through the Service)."""
    from kubernetes import client

    s = shop(reject_lab)
    toolbox = reject_lab.netns(s.toolbox)
    _, api_client = reject_lab.api()
    policies = client.NetworkingV1Api(api_client)
    policies.create_namespaced_network_policy("ops", {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "ops-egress"},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [{"podSelector": {}}]}]}})
    try:
        reject_lab.wait(lambda: egress_isolated(reject_lab, s.toolbox), timeout=10, what="the egress policy on the node")
        with IcmpListener(toolbox) as icmp:
            assert dns_query(toolbox, s.dns_pod.status.pod_ip) == "refused"
            assert dns_query(toolbox, "10.96.0.10") == "refused"
            assert icmp.errors() == [IcmpError(bridge_address(s.toolbox), 3, 3, s.dns_pod.status.pod_ip, "udp", 53),
                                     IcmpError("10.96.0.10", 3, 3, "10.96.0.10", "udp", 53)]
    finally:
        policies.delete_namespaced_network_policy("ops-egress", "ops")
    reject_lab.wait(lambda: dns_query(toolbox, "10.96.0.10") == "answer", timeout=10, what="the policy to go")


@needs_root
@pytest.mark.lab
def test_reject_mode_errors_are_rate_limited_like_a_real_node(reject_lab):
    """The node keeps the kernel's default ICMP rate limit (a burst of 6 errors to one host, then
    one a second): a client refused many times in a row times out instead, as on a real node."""
    s = shop(reject_lab)
    api = s.api_there if s.api_there.spec.node_name != s.db.spec.node_name else s.api_here
    node = f"nd-{reject_lab.name}-{api.spec.node_name}"
    limits = run_in(node, "sysctl", "-n", "net.ipv4.icmp_ratelimit", "net.ipv4.icmp_msgs_per_sec").stdout.split()
    assert limits == ["1000", "1000"]
    db = reject_lab.netns(s.db)  # a client no other test has had refused: its burst is whole
    outcomes = [connect(db, api.status.pod_ip, 8080, timeout=0.2) for _ in range(8)]
    assert outcomes == ["refused"] * 6 + ["timeout"] * 2, outcomes


@needs_root
@pytest.mark.lab
def test_lab_status_shows_the_policy_mode(reject_lab):
    out = StringIO()
    assert main(["lab", "status", "--name", reject_lab.name], Environment(stdout=out, stderr=StringIO(), width=200)) == 0
    row = next(line for line in out.getvalue().splitlines() if reject_lab.name in line)
    assert "reject" in row.split(), row
