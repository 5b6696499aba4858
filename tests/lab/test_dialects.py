"""The lab's CNI dialects with real packets: each builds the kernel objects the real CNI builds, named
as it names them; the shop works; the pod's gateway answers ARP as the CNI's does; Services are
translated where the dialect translates them (Cilium: in the client's own socket, never on the
wire, no conntrack on the node); NetworkPolicy drops, or rejects, where the CNI enforces it.

One lab per dialect in drop mode, module-scoped, and Calico and Cilium once more in reject mode
(flannel's reject mode, kube-router's, is tests/lab/test_netpol.py's). Two client pods carry the
frontend's labels, one per node; the toolbox (namespace ops) is the client the shop's policies
deny. The fault table of every dialect is tests/lab/test_lab_faults.py's.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import time
from dataclasses import dataclass
from io import StringIO

import pytest
from kubernetes import client

from netdoctor.cli import main
from netdoctor.environment import Environment
from netdoctor.lab import lifecycle
from netdoctor.lab.state import LabConfig

from labkit import run_in, start, tcp, unique_name

pytestmark = pytest.mark.lab

DIALECTS = {"flannel-vxlan": ("flannel", "vxlan"), "flannel-routed": ("flannel", "routed"),
            "calico-vxlan": ("calico", "vxlan"), "calico-routed": ("calico", "routed"),
            "cilium-vxlan": ("cilium", "vxlan")}


@dataclass
class Shop:
    lab: object
    cni: str
    overlay: str
    clients: dict  # node name -> the client pod there

    def node(self, name: str) -> str:
        return f"nd-{self.lab.name}-{name}"

    def netns(self, pod) -> str:
        return self.lab.netns(pod)

    def api_pods(self) -> dict:
        return {p.spec.node_name: p for p in self.lab.pods("shop", "app=api") if p.status.phase == "Running"}

    def toolbox(self):
        return self.lab.pods("ops")[0]

    def cluster_ip(self, name: str = "api", namespace: str = "shop") -> str:
        v1, _ = self.lab.api()
        return v1.read_namespaced_service(name, namespace).spec.cluster_ip

    def host_veth(self, pod) -> str:
        """The pod's host-side interface on its node, found by its peer's index as `ip link` shows it."""
        index = run_in(self.netns(pod), "cat", "/sys/class/net/eth0/iflink").stdout.strip()
        return next(link["ifname"] for link in ip_json(self.node(pod.spec.node_name), "link")
                    if str(link["ifindex"]) == index)


def up(cni: str, overlay: str, policy: str = "drop", proxy: str = "") -> Shop:
    lab = start(LabConfig(unique_name(), overlay=overlay, policy=policy, cni=cni, proxy=proxy).validate())
    v1, _ = lab.api()
    owner = v1.create_namespaced_config_map("shop", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="clients")))
    ref = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="clients", uid=owner.metadata.uid,
                                  controller=True)
    for node in ("node-1", "node-2"):
        v1.create_namespaced_pod("shop", client.V1Pod(
            metadata=client.V1ObjectMeta(name=f"client-{node}", labels={"app": "frontend", "role": "client"},
                                         owner_references=[ref]),
            spec=client.V1PodSpec(node_name=node, containers=[client.V1Container(name="c", image="netshoot")])))
    running = lab.wait(lambda: (lambda ps: ps if len(ps) == 2 else None)(
        [p for p in lab.pods("shop", "role=client") if p.status.phase == "Running"]), what="client pods")
    return Shop(lab, cni, overlay, {p.spec.node_name: p for p in running})


@pytest.fixture(scope="module", params=list(DIALECTS))
def shop(request):
    built = up(*DIALECTS[request.param])
    try:
        yield built
    finally:
        lifecycle.down(built.lab.name)


@pytest.fixture(scope="module", params=["calico-vxlan", "cilium-vxlan"])
def rejecting(request):
    built = up(*DIALECTS[request.param], policy="reject")
    try:
        yield built
    finally:
        lifecycle.down(built.lab.name)


@pytest.fixture(scope="module")
def iptables_mode():
    built = up("calico", "vxlan", proxy="iptables")
    try:
        yield built
    finally:
        lifecycle.down(built.lab.name)


def ip_json(netns: str, *what: str) -> list[dict]:
    return json.loads(run_in(netns, "ip", "-d", "-j", *what).stdout)


def routes(netns: str, *extra: str) -> list[dict]:
    return json.loads(run_in(netns, "ip", "-j", "route", "show", *extra).stdout)


def route_to(table: list[dict], dst: str) -> dict:
    return next(r for r in table if r["dst"] == dst)


def capture(netns: str, interface: str, action, bpf: str = "") -> str:
    """What tcpdump on `interface` in `netns` printed while `action()` ran."""
    proc = subprocess.Popen(["ip", "netns", "exec", netns, "tcpdump", "-U", "-l", "-nn", "-i", interface, *bpf.split()],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while "listening on" not in proc.stderr.readline():
        pass
    try:
        action()
        time.sleep(0.3)
    finally:
        proc.terminate()
    return proc.communicate(timeout=5)[0].strip()


def connect(netns: str, ip: str, port: int, timeout: float = 2.0) -> str:
    """A TCP connect from `netns` that waits for a SYN retransmission: an ICMP error arriving while the
    first connect() still holds its socket is only acted on at the next one."""
    script = (f"import socket; s = socket.socket(); s.settimeout({timeout})\n"
              f"try: s.connect(('{ip}', {port})); print('ok')\n"
              "except ConnectionRefusedError: print('refused')\n"
              "except OSError as e: print('timeout' if isinstance(e, TimeoutError) else e.strerror)")
    return run_in(netns, "python3", "-c", script, timeout=timeout + 3).stdout.strip()


def dns_query(netns: str, name: str = "api.shop.svc.cluster.local") -> bool:
    proc = run_in(netns, "dig", "+short", "+time=1", "+tries=1", "@10.96.0.10", name, "A")
    return proc.returncode == 0 and bool(re.search(r"^\d+\.\d+\.\d+\.\d+$", proc.stdout, re.M))


def counter(netns: str, family: str, table: str, chain: str) -> int:
    """The packets the counted rules of a chain saw."""
    text = run_in(netns, "nft", "list", "chain", family, table, chain).stdout
    return sum(int(n) for n in re.findall(r"counter packets (\d+)", text))


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    code = main(list(argv), Environment(stdout=out, stderr=err, environ={"NO_COLOR": "1"}, width=300))
    return code, out.getvalue(), err.getvalue()


# ---- the shop works -------------------------------------------------------------------------------

def test_the_shop_works_same_node_cross_node_by_cluster_ip_and_by_name(shop):
    one, api = shop.netns(shop.clients["node-1"]), shop.api_pods()
    assert tcp(one, api["node-1"].status.pod_ip, 8080) == "ok"
    assert tcp(one, api["node-2"].status.pod_ip, 8080) == "ok"
    assert [tcp(one, shop.cluster_ip(), 80) for _ in range(4)] == ["ok"] * 4
    assert run_in(one, "getent", "hosts", "api").stdout.split()[0] == shop.cluster_ip()  # the search path
    assert tcp(one, "api", 80) == "ok"


def test_status_shows_the_dialect(shop):
    code, out, _ = run_cli("lab", "status", "--name", shop.lab.name)
    row = next(line for line in out.splitlines() if shop.lab.name in line)
    proxy = "none" if shop.cni == "cilium" else "nftables"
    assert code == 0 and re.search(rf"\b{shop.cni}\b.*\b{shop.overlay}\b.*\b{proxy}\b.*\bdrop\b", row), out


# ---- kernel objects -------------------------------------------------------------------------------

def test_node_devices_are_named_as_the_cni_names_them(shop):
    node = shop.node("node-1")
    links = {link["ifname"]: link for link in ip_json(node, "link")}
    kinds = {name: (link.get("linkinfo") or {}).get("info_kind") for name, link in links.items()}
    pods = [p for p in shop.lab.pods("shop") + shop.lab.pods("ops") + shop.lab.pods("kube-system")
            if p.spec.node_name == "node-1" and not p.spec.host_network]
    veths = {shop.host_veth(p) for p in pods}
    tunnel = {"flannel": "flannel.1", "calico": "vxlan.calico", "cilium": "cilium_vxlan"}[shop.cni]
    if shop.overlay == "vxlan":
        vxlan = links[tunnel]["linkinfo"]["info_data"]
        port, vni = {"flannel": (8472, 1), "calico": (4789, 4096), "cilium": (8472, 2)}[shop.cni]
        assert (kinds[tunnel], vxlan["port"], vxlan["id"]) == ("vxlan", port, vni)
    else:
        assert "vxlan" not in kinds.values()
    if shop.cni == "flannel":
        assert kinds["cni0"] == "bridge" and all(links[v]["master"] == "cni0" and v.startswith("v") for v in veths)
    elif shop.cni == "calico":
        assert "cni0" not in links
        assert veths == {"cali" + hashlib.sha1(f"{p.metadata.namespace}.{p.metadata.name}".encode()).hexdigest()[:11]
                         for p in pods}
        assert {links[v]["address"] for v in veths} == {"ee:ee:ee:ee:ee:ee"}
    else:
        assert "cni0" not in links and (kinds["cilium_host"], kinds["cilium_net"]) == ("veth", "veth")
        assert veths == {"lxc" + hashlib.sha256(p.metadata.uid.encode()).hexdigest()[:12] for p in pods}
    addresses = {a["ifname"]: [i["local"] for i in a["addr_info"] if i["family"] == "inet"]
                 for a in ip_json(node, "addr")}
    if shop.cni != "flannel":
        assert all(addresses[v] == [] for v in veths)  # no address on a workload interface
    if shop.cni == "cilium":
        assert addresses["cilium_host"] == ["10.244.1.1"]


def test_routes_are_the_cnis(shop):
    node, pod = shop.node("node-1"), shop.clients["node-1"]
    main_table, own = routes(node), routes(shop.netns(pod))
    peer = route_to(main_table, {"calico": "10.244.2.192/26"}.get(shop.cni, "10.244.2.0/24"))
    if shop.cni == "calico":
        assert route_to(main_table, pod.status.pod_ip)["dev"] == shop.host_veth(pod)
        assert route_to(main_table, pod.status.pod_ip)["scope"] == "link"
        assert route_to(main_table, "10.244.1.192/26")["type"] == "blackhole"
        assert (peer["gateway"], peer["dev"]) == (("10.244.2.192", "vxlan.calico") if shop.overlay == "vxlan"
                                                  else ("172.30.0.2", "eth0"))
        assert peer["protocol"] == ("80" if shop.overlay == "vxlan" else "bird")
        assert [(r["dst"], r.get("gateway"), r["dev"]) for r in own] == [
            ("default", "169.254.1.1", "eth0"), ("169.254.1.1", None, "eth0")]
    elif shop.cni == "cilium":
        local = route_to(main_table, "10.244.1.0/24")
        assert (local["gateway"], local["dev"], local["prefsrc"]) == ("10.244.1.1", "cilium_host", "10.244.1.1")
        assert (peer["gateway"], peer["dev"], peer["metrics"]) == ("10.244.1.1", "cilium_host", [{"mtu": 1450}])
        assert [(r["dst"], r.get("gateway"), r.get("metrics")) for r in own] == [
            ("default", "10.244.1.1", [{"mtu": 1450}]), ("10.244.1.1", None, None)]
        assert run_in(shop.netns(pod), "cat", "/sys/class/net/eth0/mtu").stdout.strip() == "1500"
    else:
        assert (peer["gateway"], peer["dev"]) == (("10.244.2.0", "flannel.1") if shop.overlay == "vxlan"
                                                  else ("172.30.0.2", "eth0"))
        assert [(r["dst"], r.get("gateway")) for r in own] == [("default", "10.244.1.1"), ("10.244.1.0/24", None)]
    prefix = {a["local"]: a["prefixlen"] for a in ip_json(shop.netns(pod), "addr", "show", "eth0")[0]["addr_info"]
              if a["family"] == "inet"}
    assert prefix == {pod.status.pod_ip: 24 if shop.cni == "flannel" else 32}


def test_the_pod_gateway_answers_arp_as_the_cni_does(shop):
    """flannel: cni0 owns the gateway; Calico: 169.254.1.1, owned by no one, answered by proxy ARP with
    ee:ee:ee:ee:ee:ee; Cilium: the router IP answered with the pod's own lxc MAC. Learned, never static."""
    pod = shop.clients["node-1"]
    netns, node = shop.netns(pod), shop.node("node-1")
    gateway = {"flannel": "10.244.1.1", "calico": "169.254.1.1", "cilium": "10.244.1.1"}[shop.cni]
    run_in(netns, "ip", "neigh", "flush", "dev", "eth0")
    assert tcp(netns, shop.api_pods()["node-2"].status.pod_ip, 8080) == "ok"
    [entry] = [n for n in json.loads(run_in(netns, "ip", "-j", "neigh", "show", gateway).stdout)]
    links = {link["ifname"]: link for link in ip_json(node, "link")}
    owner = {"flannel": "cni0", "calico": shop.host_veth(pod), "cilium": shop.host_veth(pod)}[shop.cni]
    expected = "ee:ee:ee:ee:ee:ee" if shop.cni == "calico" else links[owner]["address"]
    assert entry["lladdr"] == expected and "PERMANENT" not in entry["state"]
    if shop.cni == "calico":
        veth = shop.host_veth(pod)
        assert run_in(node, "sysctl", "-n", f"net.ipv4.conf.{veth}.proxy_arp",
                      f"net.ipv4.neigh.{veth}.proxy_delay").stdout.split() == ["1", "0"]
        assert "169.254.1.1" not in run_in(node, "ip", "addr").stdout


# ---- Services -------------------------------------------------------------------------------------

def test_services_are_translated_where_the_proxy_translates_them(shop):
    """kube-proxy DNATs on the node: the pod sends to the ClusterIP and the node tracks it. Cilium
    translates in the client's socket: its eth0 only carries the backends' addresses, and the node's
    netfilter keeps no conntrack entry of the pod's traffic."""
    pod = shop.clients["node-1"]
    netns, cip = shop.netns(pod), shop.cluster_ip()
    backends = {p.status.pod_ip for p in shop.api_pods().values()}
    dns_pod = shop.lab.pods("kube-system", "k8s-app=kube-dns")[0].status.pod_ip
    seen = capture(netns, "eth0", lambda: ([tcp(netns, cip, 80) for _ in range(3)], dns_query(netns)))
    node_conntrack = run_in(shop.node("node-1"), "conntrack", "-L").stdout
    addresses = {ip for pair in re.findall(r" IP ([\d.]+)\.\d+ > ([\d.]+)\.\d+:", seen) for ip in pair}
    if shop.cni == "cilium":
        # no ClusterIP, not even DNS's: the client, the DNS pod, and the backends it was balanced to
        assert dns_pod in addresses and addresses & backends, seen
        assert addresses <= {pod.status.pod_ip, dns_pod} | backends, seen
        assert pod.status.pod_ip not in node_conntrack and cip not in node_conntrack, node_conntrack
        assert f"dst={cip}" in run_in(netns, "conntrack", "-L").stdout  # the translation is the pod's own
    else:
        assert f"> {cip}.80:" in seen and "> 10.96.0.10.53:" in seen, seen
        assert f"src={pod.status.pod_ip} dst={cip}" in node_conntrack, node_conntrack


def test_kube_proxy_iptables_mode_balances_rejects_and_goes_stale(iptables_mode):
    """kube-proxy's iptables chains (here under Calico): the api's KUBE-SVC chain picks either
    backend, a Service without endpoints is REJECTed (connection refused), a stopped kube-proxy
    leaves its node without Service rules."""
    shop = iptables_mode
    one, cip = shop.netns(shop.clients["node-1"]), shop.cluster_ip()
    svc = "KUBE-SVC-" + base64.b32encode(hashlib.sha256(b"shop/api:httptcp").digest()).decode()[:16]
    nat = run_in(shop.node("node-1"), "iptables-nft-save", "-t", "nat").stdout
    assert f"-j {svc}" in nat and "-m statistic --mode random --probability 0.5" in nat, nat
    backends = {p.status.pod_ip for p in shop.api_pods().values()}
    assert {reply_from(shop, one, cip) for _ in range(24)} == backends
    lifecycle.break_fault(shop.lab.name, "selector-mismatch", None)
    try:
        assert shop.lab.wait(lambda: connect(one, cip, 80) == "refused", what="REJECT without endpoints")
        assert '"shop/api:http has no endpoints"' in run_in(shop.node("node-1"), "iptables-nft-save", "-t",
                                                             "filter").stdout
    finally:
        lifecycle.fix_faults(shop.lab.name, "selector-mismatch")
    shop.lab.wait(lambda: tcp(one, cip, 80) == "ok", what="the api back")
    lifecycle.break_fault(shop.lab.name, "kube-proxy-stale", None)
    try:
        assert shop.lab.wait(lambda: tcp(one, cip, 80) != "ok", what="node-1's rules gone")
        assert "KUBE-SVC-" not in run_in(shop.node("node-1"), "iptables-nft-save", "-t", "nat").stdout
        assert tcp(shop.netns(shop.clients["node-2"]), cip, 80) == "ok"
    finally:
        lifecycle.fix_faults(shop.lab.name, "kube-proxy-stale")


def reply_from(shop: Shop, netns: str, ip: str) -> str:
    """The backend a connection from `netns` (a pod on node-1) to `ip`:80 was DNATed to, read from
    node-1's conntrack by the connection's source port."""
    port = run_in(netns, "python3", "-c", f"import socket; print(socket.create_connection(('{ip}', 80), 2)"
                  ".getsockname()[1])").stdout.strip()
    entry = run_in(shop.node("node-1"), "conntrack", "-L", "-p", "tcp", "--orig-dst", ip, "--orig-port-src", port).stdout
    return re.search(r"src=([\d.]+) dst=[\d.]+ sport=8080", entry).group(1)


# ---- NetworkPolicy --------------------------------------------------------------------------------

def policy_chain(shop: Shop, direction: str, pod) -> tuple[str, str, str]:
    """(family, table, chain) whose counted drop a denied packet of `pod` in `direction` hits."""
    if shop.cni == "flannel":
        return "ip", "netpol", direction
    if shop.cni == "calico":
        return "ip", "calico", f"filter-cali-{'tw' if direction == 'ingress' else 'fw'}-{shop.host_veth(pod)}"
    return "netdev", "cilium", direction


def test_an_ingress_deny_is_dropped_where_the_cni_enforces_it(shop):
    """The toolbox may not reach the api (the shop's policy): flannel drops it in the node's forward
    hook, Calico in the api's own tw chain, Cilium before delivery, so the api's lxc never sees it."""
    toolbox, api = shop.toolbox(), shop.api_pods()[shop.toolbox().spec.node_name]
    node = shop.node(api.spec.node_name)
    where = policy_chain(shop, "ingress", api)
    before, answers = counter(node, *where), []
    attempt = lambda: answers.append(connect(shop.netns(toolbox), api.status.pod_ip, 8080, 1.0))  # noqa: E731
    at_api = capture(node, shop.host_veth(api), attempt, f"host {toolbox.status.pod_ip}")
    at_toolbox = capture(node, shop.host_veth(toolbox), attempt, "tcp port 8080")
    assert answers == ["timeout", "timeout"] and counter(node, *where) > before
    assert f"{toolbox.status.pod_ip}." in at_toolbox, at_toolbox  # it left the toolbox
    if shop.cni == "cilium":
        assert at_api == "", at_api  # and was dropped before delivery


def test_an_egress_deny_is_dropped_where_the_cni_enforces_it(shop):
    """With the egress policy that forgets DNS, a client's query dies at its own node: in the forward
    hook (flannel), in its fw chain (Calico), on its lxc's ingress hook, after tcpdump saw it there,
    and never reaching the DNS pod's lxc (Cilium)."""
    pod = shop.clients["node-1"]
    node = shop.node("node-1")
    dns = shop.lab.pods("kube-system", "k8s-app=kube-dns")[0]
    lifecycle.break_fault(shop.lab.name, "policy-egress-dns-blocked", None)
    try:
        where = policy_chain(shop, "egress", pod)
        shop.lab.wait(lambda: not dns_query(shop.netns(pod)), what="the egress policy")
        before = counter(node, *where)
        at_dns = []
        at_client = capture(node, shop.host_veth(pod), lambda: at_dns.append(capture(
            shop.node(dns.spec.node_name), shop.host_veth(dns), lambda: dns_query(shop.netns(pod)), "udp port 53")),
            "udp port 53")
        assert counter(node, *where) > before
        if shop.cni == "cilium":
            assert f"{pod.status.pod_ip}." in at_client and f"> {dns.status.pod_ip}.53:" in at_client, at_client
            assert at_dns == [""], at_dns
    finally:
        lifecycle.fix_faults(shop.lab.name, "policy-egress-dns-blocked")
    assert shop.lab.wait(lambda: dns_query(shop.netns(pod)), what="DNS back")


def test_reject_mode_answers_as_the_cni_does(rejecting):
    """Calico's Reject: ICMP port unreachable from the node, for an ingress and an egress deny alike.
    Cilium's policy-deny-response=icmp: ICMP 'packet filtered' for an egress deny only; an ingress
    deny stays silent."""
    shop = rejecting
    toolbox = shop.toolbox()
    api = shop.api_pods()[toolbox.spec.node_name]
    netns = shop.netns(toolbox)
    answers = []
    seen = capture(netns, "eth0", lambda: answers.append(connect(netns, api.status.pod_ip, 8080)), "icmp")
    if shop.cni == "calico":
        assert answers == ["refused"] and f"ICMP {api.status.pod_ip} tcp port 8080 unreachable" in seen, seen
    else:
        assert answers == ["timeout"] and seen == "", seen
    pod = shop.clients["node-1"]
    lifecycle.break_fault(shop.lab.name, "policy-egress-dns-blocked", None)
    try:
        shop.lab.wait(lambda: not dns_query(shop.netns(pod)), what="the egress policy")
        seen = capture(shop.netns(pod), "eth0", lambda: dns_query(shop.netns(pod)), "icmp")
    finally:
        lifecycle.fix_faults(shop.lab.name, "policy-egress-dns-blocked")
    expected = "udp port 53 unreachable" if shop.cni == "calico" else "unreachable - admin prohibited filter"
    assert expected in seen, seen


# ---- faults that need an overlay ------------------------------------------------------------------

def test_the_overlay_port_blocked_is_the_dialects_or_does_not_exist(shop):
    code, _, err = run_cli("lab", "break", "overlay-port-blocked", "--name", shop.lab.name)
    if shop.overlay == "routed":
        assert code == 2 and err.count("\n") == 1, err
        assert err.startswith(f"error: overlay-port-blocked: does not exist in a {shop.cni}-routed lab"), err
        return
    try:
        assert code == 0, err
        fabric = f"nd-{shop.lab.name}-fabric"
        rules = run_in(fabric, "nft", "list", "table", "bridge", "fault-overlay-port-blocked").stdout
        assert f"udp dport {4789 if shop.cni == 'calico' else 8472} drop" in rules
    finally:
        lifecycle.fix_faults(shop.lab.name, "overlay-port-blocked")
