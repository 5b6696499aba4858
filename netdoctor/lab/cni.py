"""The CNI dialects of the lab: how a node and its pods are wired, as flannel, Calico or Cilium do it.

`build_node` is called by the lab daemon for each node, `of(node).build_sandbox` by the kubelets for
each pod, and faults use `peer_routes`, `overlay_port` and `set_overlay_mtu` to break a node the
way that CNI breaks. The dialect is `lab up --cni` (NodeNet.cni). Each builds the kernel objects the
real CNI builds, named as it names them (the facts and their sources: cni-dialects-facts.md):

- flannel: a bridge `cni0` holding 10.244.N.1/24 with each pod's veth on it; `flannel.1` (VNI 1,
  UDP 8472, 10.244.N.0/32, a route, permanent neighbour and FDB entry per peer) or host-gw routes.
- calico: no bridge. Per pod a host veth `cali` + 11 hex of sha1("<ns>.<pod>"), MAC
  ee:ee:ee:ee:ee:ee, no address, proxy_arp=1 and neigh proxy_delay=0, and a route `<podIP> dev
  caliX scope link`; the pod has a /32 and `default via 169.254.1.1`, which the node's kernel
  answers by proxy ARP (the node routes 169.254.1.1 through its default route: another device).
  Per node a /26 block, blackholed locally (`proto 80`, Felix's); `vxlan.calico` (VNI 4096, UDP
  4789, MTU host - 50, the block's first address) with `<blk> via <tunnel IP> dev vxlan.calico
  onlink` and a permanent neighbour and FDB entry per peer, or BGP-style `<blk> via <node IP> dev
  eth0 proto bird`.
- cilium: no bridge. Per pod a host veth `lxc` + 12 hex of sha256(endpoint id: the pod UID here),
  no address; `cilium_host`/`cilium_net` with the router IP (10.244.N.1/32) on cilium_host; the
  routes `ip route` shows on a Cilium node (`<CIDR> via <router IP> dev cilium_host src <router
  IP>`, remote CIDRs with `mtu 1450` in tunnel mode, or via the peer's address in native routing);
  the pod has a /32, `<router IP> dev eth0 scope link` and `default via <router IP> mtu 1450` (eth0
  stays 1500). ARP for the router IP is answered with the lxc MAC, as Cilium's BPF ARP responder
  does, by the node's kernel itself: the router IP is a local address of the node (arp_ignore=0),
  no proxy ARP and no static neighbour. The BPF redirects (straight to a local pod's lxc, into the
  tunnel for a remote one) are stood in for by one rule, `to 10.244.0.0/16 lookup 3000`: table
  3000 holds `<podIP> dev lxcX src <router IP>` per local pod, a blackhole for the rest of the
  node's CIDR and, in tunnel mode, `<remote CIDR> via <remote router IP> dev cilium_vxlan onlink`.
  `cilium_vxlan` is flow-based in Cilium; here it is a plain VXLAN device (VNI 2, UDP 8472, MTU
  1500, unbound) with a permanent neighbour and FDB entry per peer.
The kernel has no IP-in-IP, Geneve or IPVS: Calico's `tunl0`, Cilium's Geneve and kube-proxy's
IPVS mode can't be built here.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from dataclasses import dataclass

from netdoctor.lab import net, sh
from netdoctor.lab.api.status import ApiError
from netdoctor.lab.state import Cni

UNDERLAY = net.UNDERLAY_IF


@dataclass(frozen=True)
class Route:
    """A route of a node to another node's pods: what route-missing deletes and restores."""

    prefix: str
    via: str  # everything after the prefix, e.g. "via 172.30.0.2 dev eth0 proto bird"
    table: int | None = None

    def line(self, verb: str) -> str:
        table = f" table {self.table}" if self.table else ""
        if verb == "del":
            return f"route del {self.prefix}{table}"
        return f"route {verb} {self.prefix} {self.via}{table}"


class Dialect(ABC):
    """One CNI's wiring. Stateless: everything follows from the NodeNet and the pod."""

    cni: Cni
    vxlan_device: str
    vxlan_port: int

    def overlay_port(self, node: net.NodeNet) -> int | None:
        """The UDP port of the overlay between nodes, None without one (routed)."""
        return self.vxlan_port if node.overlay == "vxlan" else None

    @abstractmethod
    def node_lines(self, node: net.NodeNet) -> list[str]:
        """`ip -batch` lines for the node's pod-side devices, run right after its underlay's."""

    @abstractmethod
    def connect(self, node: net.NodeNet, peers: list[net.NodeNet]) -> None:
        """The overlay device or the routes that reach the peers' pods."""

    @abstractmethod
    def peer_routes(self, node: net.NodeNet, peers: list[net.NodeNet], mtu: int | None = None) -> list[Route]:
        """The node's routes to the peers' pods (`mtu`: the overlay's, when it is not the usual)."""

    @abstractmethod
    def build_sandbox(self, node: net.NodeNet, pod_uid: str, namespace: str, name: str, ip: str,
                      resolv_conf: str, mtu: int | None = None) -> net.Sandbox:
        """The pod's namespace, its eth0 and host veth, addresses and routes; `mtu` overrides the
        node's pod MTU (a fault's)."""

    @abstractmethod
    def set_overlay_mtu(self, node: net.NodeNet, peers: list[net.NodeNet], sandboxes: list[net.Sandbox],
                        mtu: int | None, df: bool) -> None:
        """Rebuild the node's VXLAN device with this MTU (None: the right one) and DF, and size its
        pods' path to match."""


def _fdb(node: net.NodeNet, device: str, entries: list[tuple[str, str]], flags: str = "") -> None:
    """One `bridge fdb append MAC dev DEVICE dst IP` per (MAC, peer underlay IP)."""
    sh.run(["ip", "netns", "exec", node.netns, "bridge", "-batch", "-"], stdin="".join(
        f"fdb append {mac} dev {device} dst {ip}{flags}\n" for mac, ip in entries))


def _new_pod_netns(node: net.NodeNet, pod_uid: str, resolv_conf: str) -> str:
    ns = net.pod_netns(node.lab, pod_uid)
    sh.run(["ip", "netns", "add", ns])
    net.write_resolv_conf(ns, resolv_conf)
    return ns


class Flannel(Dialect):
    """flannel: the cni0 bridge and flannel.1 (or host-gw routes)."""

    cni = Cni.FLANNEL
    vxlan_device = net.VXLAN_DEVICE
    vxlan_port = net.VXLAN_PORT

    def node_lines(self, node):
        return [
            f"link add {net.POD_BRIDGE} type bridge",
            f"link set {net.POD_BRIDGE} address {node.bridge_mac}",
            f"addr add {node.bridge_ip}/24 dev {net.POD_BRIDGE}",
            f"link set {net.POD_BRIDGE} mtu {node.pod_mtu} up",
        ]

    def connect(self, node, peers):
        if node.overlay == "vxlan":
            self._build_vxlan(node, peers)
        else:
            sh.ip_batch(node.netns, [f"route add {p.pod_cidr} via {p.underlay_ip}" for p in peers])

    def peer_routes(self, node, peers, mtu=None):
        if node.overlay == "vxlan":
            return [Route(p.pod_cidr, f"via 10.244.{p.index}.0 dev {self.vxlan_device} onlink") for p in peers]
        return [Route(p.pod_cidr, f"via {p.underlay_ip}") for p in peers]

    def _build_vxlan(self, node, peers, mtu=None, df=False):
        """The flannel-style VXLAN device with a static forwarding entry and route per peer node."""
        # Bound to the underlay device the kernel caps the MTU at underlay - 50; a misconfigured
        # (larger) MTU is only possible unbound, as a CNI that computed it wrong would leave it.
        bind = "" if mtu and mtu > node.pod_mtu else f" dev {UNDERLAY}"
        lines = [
            f"link add {self.vxlan_device} type vxlan id 1 dstport {self.vxlan_port} local {node.underlay_ip}"
            f"{bind} nolearning" + (" df set" if df else ""),
            f"link set {self.vxlan_device} address {node.vtep_mac}",
            f"addr add 10.244.{node.index}.0/32 dev {self.vxlan_device}",
            f"link set {self.vxlan_device} mtu {mtu or node.pod_mtu} up",
        ]
        for p in peers:
            lines += [
                f"route add {p.pod_cidr} via 10.244.{p.index}.0 dev {self.vxlan_device} onlink",
                f"neigh add 10.244.{p.index}.0 lladdr {p.vtep_mac} dev {self.vxlan_device} nud permanent",
            ]
        sh.ip_batch(node.netns, lines)
        _fdb(node, self.vxlan_device, [(p.vtep_mac, p.underlay_ip) for p in peers])

    def build_sandbox(self, node, pod_uid, namespace, name, ip, resolv_conf, mtu=None):
        ns = _new_pod_netns(node, pod_uid, resolv_conf)
        veth = "v" + pod_uid.replace("-", "")[:10]
        mtu = mtu or node.pod_mtu
        sh.ip_batch(node.netns, [
            f"link add {veth} mtu {mtu} type veth peer name eth0 netns {ns}",
            f"link set {veth} master {net.POD_BRIDGE} up",
            f"link set dev {veth} type bridge_slave hairpin on",
        ])
        sh.ip_batch(ns, [
            "link set lo up",
            f"addr add {ip}/24 dev eth0",
            f"link set eth0 mtu {mtu} up",
            f"route add default via {node.bridge_ip}",
        ])
        return net.Sandbox(ns, veth, ip, node)

    def set_overlay_mtu(self, node, peers, sandboxes, mtu, df):
        sh.ip_batch(node.netns, [f"link del {self.vxlan_device}"])
        self._build_vxlan(node, peers, mtu=mtu, df=df)
        pod_mtu = mtu or node.pod_mtu
        sh.ip_batch(node.netns, [f"link set {net.POD_BRIDGE} mtu {pod_mtu}"])
        for sandbox in sandboxes:
            sh.ip_batch(node.netns, [f"link set {sandbox.host_veth} mtu {pod_mtu}"])
            sh.ip_batch(sandbox.netns, [f"link set eth0 mtu {pod_mtu}"])


class Calico(Dialect):
    """Calico: cali veths with /32 routes, the proxy-ARP gateway, /26 blocks, vxlan.calico or BGP routes."""

    cni = Cni.CALICO
    vxlan_device = "vxlan.calico"
    vxlan_port = 4789
    VNI = 4096
    GATEWAY = "169.254.1.1"
    HOST_MAC = "ee:ee:ee:ee:ee:ee"
    FELIX_PROTO = "80"

    @staticmethod
    def host_veth(namespace: str, name: str) -> str:
        return "cali" + hashlib.sha1(f"{namespace}.{name}".encode()).hexdigest()[:11]

    @staticmethod
    def tunnel_ip(node: net.NodeNet) -> str:
        """The Node's ipv4VXLANTunnelAddr: the first address of its block."""
        return node.pod_cidr.split("/")[0]

    @staticmethod
    def vtep_mac(node: net.NodeNet) -> str:
        return f"66:ca:11:c0:00:{node.index:02x}"

    def node_lines(self, node):
        return [f"route add blackhole {node.pod_cidr} proto {self.FELIX_PROTO}"]

    def connect(self, node, peers):
        if node.overlay == "vxlan":
            self._build_vxlan(node, peers)
        else:
            sh.ip_batch(node.netns, [r.line("add") for r in self.peer_routes(node, peers)])

    def peer_routes(self, node, peers, mtu=None):
        if node.overlay == "vxlan":
            return [Route(p.pod_cidr, f"via {self.tunnel_ip(p)} dev {self.vxlan_device} proto {self.FELIX_PROTO} "
                                      "onlink") for p in peers]
        return [Route(p.pod_cidr, f"via {p.underlay_ip} dev {UNDERLAY} proto bird") for p in peers]

    def _build_vxlan(self, node, peers, mtu=None, df=False):
        bind = "" if mtu and mtu > node.pod_mtu else f" dev {UNDERLAY}"
        lines = [
            f"link add {self.vxlan_device} type vxlan id {self.VNI} dstport {self.vxlan_port} "
            f"local {node.underlay_ip}{bind} nolearning" + (" df set" if df else ""),
            f"link set {self.vxlan_device} address {self.vtep_mac(node)}",
            f"addr add {self.tunnel_ip(node)}/32 dev {self.vxlan_device}",
            f"link set {self.vxlan_device} mtu {mtu or node.pod_mtu} up",
        ]
        for p in peers:
            lines.append(f"neigh add {self.tunnel_ip(p)} lladdr {self.vtep_mac(p)} dev {self.vxlan_device} "
                         "nud permanent")
        sh.ip_batch(node.netns, lines + [r.line("add") for r in self.peer_routes(node, peers)])
        _fdb(node, self.vxlan_device, [(self.vtep_mac(p), p.underlay_ip) for p in peers], " self permanent")

    def build_sandbox(self, node, pod_uid, namespace, name, ip, resolv_conf, mtu=None):
        ns = _new_pod_netns(node, pod_uid, resolv_conf)
        veth = self.host_veth(namespace, name)
        mtu = mtu or node.pod_mtu
        sh.ip_batch(node.netns, [
            f"link add {veth} mtu {mtu} type veth peer name eth0 netns {ns}",
            f"link set {veth} address {self.HOST_MAC}",
            f"link set {veth} up",
            f"route add {ip} dev {veth} scope link",
        ])
        sh.sysctl(node.netns, f"net.ipv4.conf.{veth}.proxy_arp=1", f"net.ipv4.neigh.{veth}.proxy_delay=0",
                  f"net.ipv4.conf.{veth}.forwarding=1", f"net.ipv4.conf.{veth}.route_localnet=1")
        sh.ip_batch(ns, [
            "link set lo up",
            f"addr add {ip}/32 dev eth0",
            f"link set eth0 mtu {mtu} up",
            f"route add {self.GATEWAY} dev eth0 scope link",
            f"route add default via {self.GATEWAY} dev eth0",
        ])
        return net.Sandbox(ns, veth, ip, node)

    def set_overlay_mtu(self, node, peers, sandboxes, mtu, df):
        sh.ip_batch(node.netns, [f"link del {self.vxlan_device}"])
        self._build_vxlan(node, peers, mtu=mtu, df=df)
        pod_mtu = mtu or node.pod_mtu
        for sandbox in sandboxes:
            sh.ip_batch(node.netns, [f"link set {sandbox.host_veth} mtu {pod_mtu}"])
            sh.ip_batch(sandbox.netns, [f"link set eth0 mtu {pod_mtu}"])


class Cilium(Dialect):
    """Cilium: lxc veths, cilium_host/cilium_net with the router IP, cilium_vxlan or native routes."""

    cni = Cni.CILIUM
    vxlan_device = "cilium_vxlan"
    vxlan_port = 8472
    VNI = 2
    HOST_DEVICE = "cilium_host"
    NET_DEVICE = "cilium_net"
    ENDPOINT_TABLE = 3000  # the stand-in for the BPF redirects (see the module's docstring)
    ENDPOINT_RULE_PREF = 100
    DEVICE_MTU = 1500

    @staticmethod
    def host_veth(pod_uid: str) -> str:
        return "lxc" + hashlib.sha256(pod_uid.encode()).hexdigest()[:12]

    @staticmethod
    def router_ip(node: net.NodeNet) -> str:
        return f"10.244.{node.index}.1"

    @staticmethod
    def vtep_mac(node: net.NodeNet) -> str:
        return f"02:c1:1a:00:00:{node.index:02x}"

    def node_lines(self, node):
        router = self.router_ip(node)
        return [
            f"link add {self.HOST_DEVICE} type veth peer name {self.NET_DEVICE}",
            f"addr add {router}/32 dev {self.HOST_DEVICE} scope link",
            f"link set {self.NET_DEVICE} up",
            f"link set {self.HOST_DEVICE} up",
            f"route add {node.pod_cidr} via {router} dev {self.HOST_DEVICE} src {router}",
            f"route add blackhole {node.pod_cidr} table {self.ENDPOINT_TABLE}",
            f"rule add to {net.CLUSTER_CIDR} lookup {self.ENDPOINT_TABLE} pref {self.ENDPOINT_RULE_PREF}",
        ]

    def connect(self, node, peers):
        if node.overlay == "vxlan":
            self._build_vxlan(node, peers)
        else:
            sh.ip_batch(node.netns, [r.line("add") for r in self.peer_routes(node, peers)])

    def peer_routes(self, node, peers, mtu=None):
        if node.overlay != "vxlan":
            return [Route(p.pod_cidr, f"via {p.underlay_ip} dev {UNDERLAY}") for p in peers]
        router, path_mtu = self.router_ip(node), mtu or node.pod_mtu
        routes = []
        for p in peers:
            routes += [
                Route(p.pod_cidr, f"via {router} dev {self.HOST_DEVICE} src {router} mtu {path_mtu}"),
                Route(p.pod_cidr, f"via {self.router_ip(p)} dev {self.vxlan_device} onlink src {router} "
                                  f"mtu {path_mtu}", self.ENDPOINT_TABLE),
            ]
        return routes

    def _build_vxlan(self, node, peers, mtu=None, df=False):
        lines = [
            f"link add {self.vxlan_device} type vxlan id {self.VNI} dstport {self.vxlan_port} "
            f"local {node.underlay_ip} nolearning" + (" df set" if df else ""),
            f"link set {self.vxlan_device} address {self.vtep_mac(node)}",
            f"link set {self.vxlan_device} mtu {self.DEVICE_MTU} up",
        ]
        for p in peers:
            lines.append(f"neigh add {self.router_ip(p)} lladdr {self.vtep_mac(p)} dev {self.vxlan_device} "
                         "nud permanent")
        # replace: the node's cilium_host routes to its peers outlive the device when a fault rebuilds it
        sh.ip_batch(node.netns, lines + [r.line("replace") for r in self.peer_routes(node, peers, mtu)])
        _fdb(node, self.vxlan_device, [(self.vtep_mac(p), p.underlay_ip) for p in peers], " self permanent")

    def build_sandbox(self, node, pod_uid, namespace, name, ip, resolv_conf, mtu=None):
        ns = _new_pod_netns(node, pod_uid, resolv_conf)
        veth, router = self.host_veth(pod_uid), self.router_ip(node)
        sh.ip_batch(node.netns, [
            f"link add {veth} mtu {self.DEVICE_MTU} type veth peer name eth0 netns {ns}",
            f"link set {veth} up",
            f"route add {ip} dev {veth} scope link src {router} table {self.ENDPOINT_TABLE}",
        ])
        sh.ip_batch(ns, [
            "link set lo up",
            f"addr add {ip}/32 dev eth0",
            f"link set eth0 mtu {self.DEVICE_MTU} up",
            f"route add {router} dev eth0 scope link",
            f"route add default via {router} dev eth0 mtu {mtu or node.pod_mtu}",
        ])
        return net.Sandbox(ns, veth, ip, node)

    def set_overlay_mtu(self, node, peers, sandboxes, mtu, df):
        """The path MTU lives in routes here (the devices stay at 1500): the node's routes to its
        peers and its pods' default routes change; the VXLAN device is rebuilt for DF."""
        sh.ip_batch(node.netns, [f"link del {self.vxlan_device}"])
        self._build_vxlan(node, peers, mtu=mtu, df=df)
        for sandbox in sandboxes:
            sh.ip_batch(sandbox.netns, [f"route replace default via {self.router_ip(node)} dev eth0 "
                                        f"mtu {mtu or node.pod_mtu}"])


DIALECTS: dict[Cni, Dialect] = {d.cni: d for d in (Flannel(), Calico(), Cilium())}


def of(node: net.NodeNet) -> Dialect:
    return DIALECTS[node.cni]


def build_node(node: net.NodeNet, peers: list[net.NodeNet], resolv_conf: str) -> None:
    """Namespace, underlay port on the fabric, forwarding, the CNI's devices and its routes to the peers."""
    dialect = of(node)
    net.add_node(node, resolv_conf, dialect.node_lines(node))
    dialect.connect(node, peers)


def require_overlay(node: net.NodeNet) -> Dialect:
    """The node's dialect, when it has an overlay a fault can break; else the user's error."""
    if node.overlay != "vxlan":
        raise ApiError(422, f"does not exist in a {node.cni.value}-{node.overlay} lab: there is no tunnel "
                            "between its nodes (lab up --overlay vxlan)")
    return of(node)
