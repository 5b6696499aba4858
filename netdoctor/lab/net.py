"""The lab's data plane topology: a fabric, nodes and their addresses, pod sandboxes, teardown.

Called by the CNI dialects (netdoctor.lab.cni: the node's and pods' own wiring), the lab daemon
(tear down), the kubelets and faults. Everything lives in namespaces named `nd-<lab>-…`; the root
network namespace is never touched: veths are created inside node namespaces and their peers
pushed straight into the pod or fabric namespace.
"""

from __future__ import annotations

import ipaddress
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from netdoctor.lab import sh
from netdoctor.lab.state import Cni

FABRIC_CIDR = "172.30.0.0/24"
FABRIC_GATEWAY = "172.30.0.254"
SERVICE_CIDR = "10.96.0.0/16"
CLUSTER_CIDR = "10.244.0.0/16"
VXLAN_PORT = 8472
VXLAN_DEVICE = "flannel.1"
POD_BRIDGE = "cni0"
UNDERLAY_IF = "eth0"
NETNS_ETC = Path("/etc/netns")


@dataclass(frozen=True)
class NodeNet:
    """One node's addresses. `index` starts at 1 and fixes every address below."""

    lab: str
    index: int
    overlay: str  # "vxlan" or "routed"
    cni: Cni = Cni.FLANNEL

    @property
    def name(self) -> str:
        return f"node-{self.index}"

    @property
    def netns(self) -> str:
        return f"nd-{self.lab}-{self.name}"

    @property
    def underlay_ip(self) -> str:
        return f"172.30.0.{self.index}"

    @property
    def pod_cidr(self) -> str:
        """Where this node's pods get their IPs: a /24 (flannel, Cilium) or Calico's /26 block."""
        if self.cni is Cni.CALICO:
            return f"10.244.{self.index}.192/26"
        return f"10.244.{self.index}.0/24"

    @property
    def bridge_ip(self) -> str:
        return f"10.244.{self.index}.1"

    @property
    def vtep_mac(self) -> str:
        return f"02:4e:44:00:00:{self.index:02x}"

    @property
    def bridge_mac(self) -> str:
        """Pinned, as CNI bridge plugins do: an unset bridge MAC follows its lowest port's, and
        every pod added could change it under the other pods' ARP entries for their gateway."""
        return f"0a:58:0a:f4:{self.index:02x}:01"

    @property
    def pod_mtu(self) -> int:
        return 1450 if self.overlay == "vxlan" else 1500

    @property
    def fabric_port(self) -> str:
        return f"u{self.index}"


def fabric_netns(lab: str) -> str:
    return f"nd-{lab}-fabric"


def lab_netns_prefix(lab: str) -> str:
    return f"nd-{lab}-"


def write_resolv_conf(netns: str, text: str) -> None:
    directory = NETNS_ETC / netns
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "resolv.conf").write_text(text)


def build_fabric(lab: str) -> None:
    ns = fabric_netns(lab)
    sh.run(["ip", "netns", "add", ns])
    sh.ip_batch(ns, [
        "link set lo up",
        "link add br0 type bridge",
        f"addr add {FABRIC_GATEWAY}/24 dev br0",
        "link set br0 up",
    ])


def add_node(node: NodeNet, resolv_conf: str, pod_side: list[str]) -> None:
    """Namespace, underlay port on the fabric, default route and forwarding; `pod_side` (the CNI's
    devices, as `ip -batch` lines) goes in the same batch as the underlay."""
    ns, fabric = node.netns, fabric_netns(node.lab)
    sh.run(["ip", "netns", "add", ns])
    write_resolv_conf(ns, resolv_conf)
    sh.ip_batch(fabric, [
        f"link add {node.fabric_port} type veth peer name {UNDERLAY_IF} netns {ns}",
        f"link set {node.fabric_port} master br0 up",
    ])
    sh.ip_batch(ns, [
        "link set lo up",
        f"addr add {node.underlay_ip}/24 dev {UNDERLAY_IF}",
        f"link set {UNDERLAY_IF} up",
        f"route add default via {FABRIC_GATEWAY}",
        *pod_side,
    ])
    sh.sysctl(ns, "net.ipv4.ip_forward=1")


@dataclass(frozen=True)
class Sandbox:
    """A pod's network: its namespace, the host-side veth on the node, its IP."""

    netns: str
    host_veth: str
    ip: str
    node: NodeNet


def pod_netns(lab: str, pod_uid: str) -> str:
    return f"nd-{lab}-p{pod_uid.replace('-', '')[:10]}"


def delete_netns(netns: str) -> None:
    """Kill what runs inside, delete the namespace and its /etc/netns files; idempotent."""
    for pid in sh.netns_pids(netns):
        _kill(pid)
    sh.run(["ip", "netns", "delete", netns], check=False)
    directory = NETNS_ETC / netns
    if directory.exists():
        for file in directory.iterdir():
            file.unlink()
        directory.rmdir()


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def teardown(lab: str) -> list[str]:
    """Delete every namespace of this lab (pods first, fabric last); returns what was removed."""
    prefix = lab_netns_prefix(lab)
    names = [n for n in sh.netns_names() if n.startswith(prefix)]
    names.sort(key=lambda n: (n.endswith("-fabric"), "-node-" in n))
    for name in names:
        delete_netns(name)
    leftovers = [p for p in NETNS_ETC.glob(prefix + "*")] if NETNS_ETC.exists() else []
    for directory in leftovers:
        delete_netns(directory.name)
    return names


class IpPool:
    """Pod IPs of one node's CIDR (.2 to .254), handed out round-robin like host-local IPAM,
    so a new pod never inherits the neighbour entries of one that just went away."""

    def __init__(self, cidr: str):
        self._hosts = [str(h) for h in ipaddress.ip_network(cidr).hosts()][1:]
        self._used: set[str] = set()
        self._next = 0

    def available(self, ip: str) -> bool:
        return ip in self._hosts and ip not in self._used

    def take(self, requested: str | None = None) -> str:
        """The next free IP, or `requested` (a pod that asks for its address) when it is free."""
        if requested is not None:
            if not self.available(requested):
                raise sh.LabCommandError(f"{requested} is not a free address of this node")
            self._used.add(requested)
            return requested
        for step in range(len(self._hosts)):
            ip = self._hosts[(self._next + step) % len(self._hosts)]
            if ip not in self._used:
                self._used.add(ip)
                self._next = (self._next + step + 1) % len(self._hosts)
                return ip
        raise sh.LabCommandError("node pod CIDR exhausted")

    def give_back(self, ip: str) -> None:
        self._used.discard(ip)
