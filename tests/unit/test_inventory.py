"""Host inventory: parsing `inventory_command()` output (real lab outputs and hand-made CNI shapes)
and the lookups the judge makes on it."""

import os
import shutil
import subprocess

import pytest

from netdoctor.probe.inventory import inventory_command, parse_inventory
from netdoctor.observations import (
    ExecError,
    ExecErrorKind,
    ExecResult,
    InterfaceKind,
    Route,
)


def ok(stdout: str, stderr: bytes = b"") -> ExecResult:
    return ExecResult(0, stdout.encode(), stderr)


# Real output of inventory_command() in node-1 of `netdoctor lab up` (flannel-like: cni0 bridge,
# flannel.1 vxlan, eth0 to the fabric). Trimmed: some detail tails and multicast fdb entries.
LAB_NODE_1 = r"""@@link
1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00 promiscuity 0  allmulti 0 minmtu 0 maxmtu 0 addrgenmode eui64 numtxqueues 1 numrxqueues 1 gso_max_size 65536 gso_max_segs 65535 tso_max_size 524280 tso_max_segs 65535 gro_max_size 65536 
2: eth0@if3: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default qlen 1000\    link/ether d6:d6:1a:34:95:44 brd ff:ff:ff:ff:ff:ff link-netns nd-inv12938-fabric promiscuity 0  allmulti 0 minmtu 68 maxmtu 65535 \    veth addrgenmode eui64 numtxqueues 2 numrxqueues 2 gso_max_size 65536 gso_max_segs 65535 tso_max_size 524280 tso_max_segs 65535 gro_max_size 65536 
3: cni0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UP mode DEFAULT group default qlen 1000\    link/ether 0a:58:0a:f4:01:01 brd ff:ff:ff:ff:ff:ff promiscuity 0  allmulti 0 minmtu 68 maxmtu 65535 \    bridge forward_delay 1500 hello_time 200 max_age 2000 ageing_time 30000 stp_state 0 priority 32768 vlan_filtering 0 bridge_id 8000.a:58:a:f4:1:1 nf_call_iptables 0 addrgenmode eui64 numtxqueues 1 numrxqueues 1 
4: flannel.1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\    link/ether 02:4e:44:00:00:01 brd ff:ff:ff:ff:ff:ff promiscuity 0  allmulti 0 minmtu 68 maxmtu 65535 \    vxlan id 1 local 172.30.0.1 dev eth0 srcport 0 0 dstport 8472 nolearning ttl auto ageing 300 udpcsum noudp6zerocsumtx noudp6zerocsumrx addrgenmode eui64 numtxqueues 1 numrxqueues 1 gso_max_size 65536 gso_max_segs 65535 tso_max_size 524280 tso_max_segs 65535 gro_max_size 65536 
5: vf9bb6a14bb@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue master cni0 state UP mode DEFAULT group default qlen 1000\    link/ether ca:90:c4:d2:ac:aa brd ff:ff:ff:ff:ff:ff link-netns nd-inv12938-pf9bb6a14bb promiscuity 1  allmulti 1 minmtu 68 maxmtu 65535 \    veth \    bridge_slave state forwarding priority 32 cost 2 hairpin on guard off root_block off fastleave off learning on flood on port_id 0x8001 port_no 0x1 addrgenmode eui64 numtxqueues 2 numrxqueues 2 
6: v62ef835bc4@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue master cni0 state UP mode DEFAULT group default qlen 1000\    link/ether 32:7a:32:a8:0d:e7 brd ff:ff:ff:ff:ff:ff link-netns nd-inv12938-p62ef835bc4 promiscuity 1  allmulti 1 minmtu 68 maxmtu 65535 \    veth \    bridge_slave state forwarding priority 32 cost 2 hairpin on port_id 0x8002 port_no 0x2 addrgenmode eui64 numtxqueues 2 numrxqueues 2 
7: vba8e8bc8c4@if2: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue master cni0 state UP mode DEFAULT group default qlen 1000\    link/ether 52:31:95:07:36:ef brd ff:ff:ff:ff:ff:ff link-netns nd-inv12938-pba8e8bc8c4 promiscuity 1  allmulti 1 minmtu 68 maxmtu 65535 \    veth \    bridge_slave state forwarding priority 32 cost 2 hairpin on port_id 0x8003 port_no 0x3 addrgenmode eui64 numtxqueues 2 numrxqueues 2 
@@addr
1: lo    inet 127.0.0.1/8 scope host lo\       valid_lft forever preferred_lft forever
2: eth0    inet 172.30.0.1/24 scope global eth0\       valid_lft forever preferred_lft forever
3: cni0    inet 10.244.1.1/24 scope global cni0\       valid_lft forever preferred_lft forever
4: flannel.1    inet 10.244.1.0/32 scope global flannel.1\       valid_lft forever preferred_lft forever
@@route
default via 172.30.0.254 dev eth0 
10.244.1.0/24 dev cni0 proto kernel scope link src 10.244.1.1 
10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink 
172.30.0.0/24 dev eth0 proto kernel scope link src 172.30.0.1 
@@neigh
10.244.1.4 dev cni0 lladdr c2:31:54:6a:3a:ae REACHABLE 
10.244.2.0 dev flannel.1 lladdr 02:4e:44:00:00:02 PERMANENT 
10.244.1.3 dev cni0 lladdr a2:df:7a:7e:99:d9 REACHABLE 
10.244.1.2 dev cni0 lladdr 6e:08:1f:bf:04:84 REACHABLE 
@@fdb
33:33:00:00:00:01 dev eth0 self permanent
01:00:5e:00:00:01 dev cni0 self permanent
0a:58:0a:f4:01:01 dev cni0 master cni0 permanent
02:4e:44:00:00:02 dev flannel.1 dst 172.30.0.2 self permanent
6e:08:1f:bf:04:84 dev vf9bb6a14bb master cni0 
ca:90:c4:d2:ac:aa dev vf9bb6a14bb master cni0 permanent
33:33:00:00:00:01 dev vf9bb6a14bb self permanent
a2:df:7a:7e:99:d9 dev v62ef835bc4 master cni0 
32:7a:32:a8:0d:e7 dev v62ef835bc4 master cni0 permanent
c2:31:54:6a:3a:ae dev vba8e8bc8c4 master cni0 
52:31:95:07:36:ef dev vba8e8bc8c4 master cni0 permanent
@@end
"""

# Real output of lab node-2 after adding, inside its namespace: a veth `cali1234` (peer down) with
# a /32 route, a multipath route, blackhole and unreachable routes, and two neighbours that never
# answered. Trimmed: the pod veths, and the fdb down to the vxlan entry (as once the bridge has
# aged the pods' MACs out while their neighbour entries remain).
LAB_NODE_2_EXTRA = r"""@@link
1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00 promiscuity 0  allmulti 0 minmtu 0 maxmtu 0 addrgenmode eui64 numtxqueues 1 numrxqueues 1 
2: eth0@if4: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP mode DEFAULT group default qlen 1000\    link/ether 36:7b:8d:2b:f6:c7 brd ff:ff:ff:ff:ff:ff link-netns nd-inv12938-fabric promiscuity 0  allmulti 0 minmtu 68 maxmtu 65535 \    veth addrgenmode eui64 numtxqueues 2 numrxqueues 2 
3: cni0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UP mode DEFAULT group default qlen 1000\    link/ether 0a:58:0a:f4:02:01 brd ff:ff:ff:ff:ff:ff promiscuity 0  allmulti 0 minmtu 68 maxmtu 65535 \    bridge forward_delay 1500 hello_time 200 max_age 2000 addrgenmode eui64 numtxqueues 1 numrxqueues 1 
4: flannel.1: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\    link/ether 02:4e:44:00:00:02 brd ff:ff:ff:ff:ff:ff promiscuity 0  allmulti 0 minmtu 68 maxmtu 65535 \    vxlan id 1 local 172.30.0.2 dev eth0 srcport 0 0 dstport 8472 nolearning ttl auto ageing 300 udpcsum addrgenmode eui64 
8: calipeer@cali1234: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN mode DEFAULT group default qlen 1000\    link/ether ce:77:ac:ed:d9:75 brd ff:ff:ff:ff:ff:ff promiscuity 0  allmulti 0 minmtu 68 maxmtu 65535 \    veth addrgenmode eui64 numtxqueues 2 numrxqueues 2 
9: cali1234@calipeer: <NO-CARRIER,BROADCAST,MULTICAST,UP,M-DOWN> mtu 1500 qdisc noqueue state LOWERLAYERDOWN mode DEFAULT group default qlen 1000\    link/ether 5e:ce:5c:74:c8:d5 brd ff:ff:ff:ff:ff:ff promiscuity 0  allmulti 0 minmtu 68 maxmtu 65535 \    veth addrgenmode eui64 numtxqueues 2 numrxqueues 2 
@@addr
1: lo    inet 127.0.0.1/8 scope host lo\       valid_lft forever preferred_lft forever
2: eth0    inet 172.30.0.2/24 scope global eth0\       valid_lft forever preferred_lft forever
3: cni0    inet 10.244.2.1/24 scope global cni0\       valid_lft forever preferred_lft forever
4: flannel.1    inet 10.244.2.0/32 scope global flannel.1\       valid_lft forever preferred_lft forever
@@route
default via 172.30.0.254 dev eth0 
unreachable 10.98.0.0/16 
10.99.0.0/24 \	nexthop via 172.30.0.254 dev eth0 weight 1 \	nexthop via 10.244.1.0 dev flannel.1 weight 1 onlink 
10.244.1.0/24 via 10.244.1.0 dev flannel.1 onlink 
10.244.2.0/24 dev cni0 proto kernel scope link src 10.244.2.1 
10.244.2.77 dev cali1234 scope link linkdown 
blackhole 10.244.9.0/26 
172.30.0.0/24 dev eth0 proto kernel scope link src 172.30.0.2 
@@neigh
10.244.2.98 dev cni0 FAILED 
10.244.1.0 dev flannel.1 lladdr 02:4e:44:00:00:01 PERMANENT 
10.244.2.3 dev cni0 lladdr be:c0:06:4a:37:53 REACHABLE 
10.244.2.99 dev cni0 INCOMPLETE 
@@fdb
02:4e:44:00:00:01 dev flannel.1 dst 172.30.0.1 self permanent
@@end
"""

# Real output inside a lab pod's namespace.
LAB_POD = r"""@@link
1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00 promiscuity 0  allmulti 0 minmtu 0 maxmtu 0 addrgenmode eui64 numtxqueues 1 numrxqueues 1 
2: eth0@if5: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UP mode DEFAULT group default qlen 1000\    link/ether 6e:08:1f:bf:04:84 brd ff:ff:ff:ff:ff:ff link-netns nd-inv12938-node-1 promiscuity 0  allmulti 0 minmtu 68 maxmtu 65535 \    veth addrgenmode eui64 numtxqueues 2 numrxqueues 2 
@@addr
1: lo    inet 127.0.0.1/8 scope host lo\       valid_lft forever preferred_lft forever
2: eth0    inet 10.244.1.2/24 scope global eth0\       valid_lft forever preferred_lft forever
@@route
default via 10.244.1.1 dev eth0 
10.244.1.0/24 dev eth0 proto kernel scope link src 10.244.1.2 
@@neigh
10.244.1.1 dev eth0 lladdr 0a:58:0a:f4:01:01 REACHABLE 
@@fdb
33:33:00:00:00:01 dev eth0 self permanent
@@end
"""

# Hand-made: a Calico node (IPIP tunl0 and vxlan.calico, one cali veth per pod, all with the same
# MAC, reached through /32 routes; a blackhole for the node's own block), `bridge` not installed.
CALICO_NODE = r"""@@link
1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00 promiscuity 0 minmtu 0 maxmtu 0 addrgenmode eui64 
2: ens5: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 9001 qdisc mq state UP mode DEFAULT group default qlen 1000\    link/ether 0a:1b:2c:3d:4e:5f brd ff:ff:ff:ff:ff:ff promiscuity 0 minmtu 128 maxmtu 9216 addrgenmode eui64 numtxqueues 2 parentbus pci parentdev 0000:00:05.0 \    altname enp0s5
3: tunl0@NONE: <NOARP,UP,LOWER_UP> mtu 8981 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\    link/ipip 0.0.0.0 brd 0.0.0.0 promiscuity 0 minmtu 0 maxmtu 0 \    ipip any remote any local any ttl inherit nopmtudisc addrgenmode eui64 
4: vxlan.calico: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 8951 qdisc noqueue state UNKNOWN mode DEFAULT group default \    link/ether 66:a1:b2:c3:d4:e5 brd ff:ff:ff:ff:ff:ff promiscuity 0 minmtu 68 maxmtu 65535 \    vxlan id 4096 local 10.0.1.10 dev ens5 srcport 0 0 dstport 4789 nolearning ttl auto ageing 300 udpcsum addrgenmode eui64 
7: cali1234@if3: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 8951 qdisc noqueue state UP mode DEFAULT group default qlen 1000\    link/ether ee:ee:ee:ee:ee:ee brd ff:ff:ff:ff:ff:ff link-netns cni-1c2d3e4f promiscuity 0 minmtu 68 maxmtu 65535 \    veth addrgenmode eui64 
8: cali5678@if3: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 8951 qdisc noqueue state UP mode DEFAULT group default qlen 1000\    link/ether ee:ee:ee:ee:ee:ee brd ff:ff:ff:ff:ff:ff link-netns cni-5a6b7c8d promiscuity 0 minmtu 68 maxmtu 65535 \    veth addrgenmode eui64 
@@addr
1: lo    inet 127.0.0.1/8 scope host lo\       valid_lft forever preferred_lft forever
2: ens5    inet 10.0.1.10/24 metric 100 brd 10.0.1.255 scope global dynamic ens5\       valid_lft 3423sec preferred_lft 3423sec
3: tunl0    inet 10.244.1.0/32 scope global tunl0\       valid_lft forever preferred_lft forever
@@route
default via 10.0.1.1 dev ens5 proto dhcp src 10.0.1.10 metric 100 
10.0.1.0/24 dev ens5 proto kernel scope link src 10.0.1.10 metric 100 
blackhole 10.244.1.0/26 proto bird 
10.244.1.5 dev cali1234 scope link 
10.244.1.6 dev cali5678 scope link 
10.244.2.0/26 via 10.0.1.11 dev tunl0 proto bird onlink 
@@neigh
10.0.1.1 dev ens5 lladdr 0a:ff:00:11:22:33 REACHABLE 
10.0.1.11 dev ens5 lladdr 0a:ff:00:44:55:66 STALE 
@@fdb
@@end
"""

# Hand-made (no geneve on the lab kernel): a geneve device as iproute2 prints it, and Cilium's
# collect-metadata one, for which iproute2 prints only `external` (no port).
GENEVE_NODE = r"""@@link
1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00 
2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc fq_codel state UP mode DEFAULT group default qlen 1000\    link/ether 52:54:00:12:34:56 brd ff:ff:ff:ff:ff:ff promiscuity 0 minmtu 68 maxmtu 65535 addrgenmode eui64 
5: gnv0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1450 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\    link/ether 8a:11:22:33:44:55 brd ff:ff:ff:ff:ff:ff promiscuity 0 minmtu 68 maxmtu 65485 \    geneve id 10 remote 172.30.0.2 ttl auto dstport 6081 noudpcsum udp6zerocsumrx addrgenmode eui64 
6: cilium_geneve: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\    link/ether 9e:aa:bb:cc:dd:ee brd ff:ff:ff:ff:ff:ff promiscuity 0 minmtu 68 maxmtu 65485 \    geneve external addrgenmode eui64 
7: wg0: <POINTOPOINT,NOARP,UP,LOWER_UP> mtu 1420 qdisc noqueue state UNKNOWN mode DEFAULT group default qlen 1000\    link/none  promiscuity 0 minmtu 0 maxmtu 2147483552 \    wireguard addrgenmode none 
8: kube-ipvs0: <BROADCAST,NOARP> mtu 1500 qdisc noop state DOWN mode DEFAULT group default \    link/ether 3a:00:00:00:00:01 brd ff:ff:ff:ff:ff:ff promiscuity 0 \    dummy addrgenmode eui64 
@@addr
2: eth0    inet 172.30.0.1/24 brd 172.30.0.255 scope global eth0\       valid_lft forever preferred_lft forever
7: wg0    inet 10.250.0.1 peer 10.250.0.2/32 scope global wg0\       valid_lft forever preferred_lft forever
8: kube-ipvs0    inet 10.96.0.10/32 scope global kube-ipvs0\       valid_lft forever preferred_lft forever
8: kube-ipvs0    inet 10.96.0.1/32 scope global kube-ipvs0\       valid_lft forever preferred_lft forever
@@route
10.244.2.0/24 via 10.244.2.0 dev gnv0 onlink 
@@neigh
@@fdb
@@end
"""


def by_name(text: str) -> dict:
    return {i.name: i for i in parse_inventory(ok(text)).interfaces}


# ---------------------------------------------------------------- the command


def test_command_is_one_sh_exec():
    argv = inventory_command()
    assert argv[:2] == ["sh", "-c"] and len(argv) == 3
    for part in ("ip -d -o link show", "ip -o -4 route show table main", "bridge fdb show 2>/dev/null"):
        assert part in argv[2]


@pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2")
def test_command_runs_and_parses_here():
    """Read-only: the script runs under sh and its output parses (loopback always exists)."""
    proc = subprocess.run(inventory_command(), check=False, capture_output=True, timeout=30)
    inv = parse_inventory(ExecResult(proc.returncode, proc.stdout, proc.stderr))
    assert any(i.kind is InterfaceKind.LOOPBACK for i in inv.interfaces)
    assert "127.0.0.1" in inv.local_ips()


@pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2")
def test_command_without_bridge_binary_still_succeeds(tmp_path):
    for tool in ("sh", "ip"):
        os.symlink(shutil.which(tool), tmp_path / tool)
    proc = subprocess.run(inventory_command(), check=False, capture_output=True, timeout=30, env={"PATH": str(tmp_path)})
    inv = parse_inventory(ExecResult(proc.returncode, proc.stdout, proc.stderr))
    assert inv.fdb == () and inv.interfaces


@pytest.mark.skipif(shutil.which("sh") is None, reason="needs sh")
def test_command_without_ip_binary_fails_clearly(tmp_path):
    os.symlink(shutil.which("sh"), tmp_path / "sh")
    proc = subprocess.run(inventory_command(), check=False, capture_output=True, timeout=30, env={"PATH": str(tmp_path)})
    with pytest.raises(ValueError, match=r"^inventory command exited with 127: .*ip"):
        parse_inventory(ExecResult(proc.returncode, proc.stdout, proc.stderr))


# ---------------------------------------------------------------- interfaces


def test_lab_node_interfaces():
    ifs = by_name(LAB_NODE_1)
    assert list(ifs) == ["lo", "eth0", "cni0", "flannel.1", "vf9bb6a14bb", "v62ef835bc4", "vba8e8bc8c4"]
    assert {n: i.kind for n, i in ifs.items() if n in ("lo", "eth0", "cni0", "flannel.1")} == {
        "lo": InterfaceKind.LOOPBACK, "eth0": InterfaceKind.VETH,
        "cni0": InterfaceKind.BRIDGE, "flannel.1": InterfaceKind.OVERLAY,
    }
    port = ifs["vf9bb6a14bb"]
    assert (port.index, port.kind, port.master, port.mtu, port.up) == (5, InterfaceKind.VETH, "cni0", 1450, True)
    assert ifs["eth0"].master is None and ifs["eth0"].link is None


def test_vxlan_port_and_underlay_device():
    vxlan = by_name(LAB_NODE_1)["flannel.1"]
    assert (vxlan.overlay_port, vxlan.link, vxlan.mtu) == (8472, "eth0", 1450)
    assert by_name(CALICO_NODE)["vxlan.calico"].overlay_port == 4789


def test_addresses_with_prefix():
    ifs = by_name(LAB_NODE_1)
    assert ifs["cni0"].addresses == ("10.244.1.1/24",)
    assert ifs["flannel.1"].addresses == ("10.244.1.0/32",)
    assert ifs["vf9bb6a14bb"].addresses == ()
    geneve = by_name(GENEVE_NODE)
    assert geneve["kube-ipvs0"].addresses == ("10.96.0.10/32", "10.96.0.1/32")
    assert geneve["wg0"].addresses == ("10.250.0.1/32",)  # the local side of a peer address


def test_down_interface_and_peer_suffixes():
    ifs = by_name(LAB_NODE_2_EXTRA)
    assert ifs["calipeer"].up is False and ifs["cali1234"].up is True
    calico = by_name(CALICO_NODE)
    assert "tunl0" in calico and "cali1234" in calico  # `@NONE`, `@if3` stripped


def test_calico_kinds():
    ifs = by_name(CALICO_NODE)
    assert ifs["ens5"].kind is InterfaceKind.DEVICE and ifs["ens5"].mtu == 9001  # altname is no kind
    assert ifs["tunl0"].kind is InterfaceKind.OVERLAY and ifs["tunl0"].overlay_port is None
    assert ifs["cali5678"].kind is InterfaceKind.VETH


def test_geneve_wireguard_and_dummy():
    ifs = by_name(GENEVE_NODE)
    assert ifs["gnv0"].kind is InterfaceKind.OVERLAY and ifs["gnv0"].overlay_port == 6081
    assert ifs["cilium_geneve"].kind is InterfaceKind.OVERLAY and ifs["cilium_geneve"].overlay_port is None
    assert ifs["wg0"].kind is InterfaceKind.OVERLAY
    assert ifs["kube-ipvs0"].kind is InterfaceKind.DEVICE and ifs["kube-ipvs0"].up is False


def test_index_lookup_for_pcap_names():
    inv = parse_inventory(ok(LAB_NODE_1))
    assert inv.by_index(4).name == "flannel.1"
    assert inv.names()[5] == "vf9bb6a14bb"


# ---------------------------------------------------------------- routes, neighbours, fdb


def test_routes():
    inv = parse_inventory(ok(LAB_NODE_1))
    assert inv.routes == (
        Route("default", "eth0", "172.30.0.254"),
        Route("10.244.1.0/24", "cni0"),
        Route("10.244.2.0/24", "flannel.1", "10.244.2.0"),
        Route("172.30.0.0/24", "eth0"),
    )


def test_typed_multipath_and_host_routes():
    routes = {r.destination: r for r in parse_inventory(ok(LAB_NODE_2_EXTRA)).routes}
    assert routes["10.98.0.0/16"] == Route("10.98.0.0/16", None)  # unreachable
    assert routes["10.244.9.0/26"] == Route("10.244.9.0/26", None)  # blackhole
    assert routes["10.99.0.0/24"] == Route("10.99.0.0/24", "eth0", "172.30.0.254")  # first nexthop
    assert routes["10.244.2.77/32"] == Route("10.244.2.77/32", "cali1234")


def test_neighbours_need_a_mac():
    inv = parse_inventory(ok(LAB_NODE_2_EXTRA))
    assert inv.neighbours == (
        ("10.244.1.0", "02:4e:44:00:00:01", "flannel.1"),
        ("10.244.2.3", "be:c0:06:4a:37:53", "cni0"),
    )


def test_fdb_keeps_bridge_ports_only():
    fdb = parse_inventory(ok(LAB_NODE_1)).fdb
    assert ("6e:08:1f:bf:04:84", "vf9bb6a14bb") in fdb
    assert {port for _, port in fdb} == {"vf9bb6a14bb", "v62ef835bc4", "vba8e8bc8c4"}  # no self, no cni0
    assert parse_inventory(ok(LAB_NODE_2_EXTRA)).fdb == ()  # a vxlan's `dst ... self` entry is no port


def test_missing_bridge_tool_gives_empty_fdb():
    inv = parse_inventory(ok(CALICO_NODE, stderr=b"sh: 1: bridge: not found\n"))
    assert inv.fdb == () and len(inv.interfaces) == 6


# ---------------------------------------------------------------- lookups


@pytest.mark.parametrize("ip, destination", [
    ("10.244.1.7", "10.244.1.0/24"),
    ("10.244.2.9", "10.244.2.0/24"),
    ("172.30.0.2", "172.30.0.0/24"),
    ("8.8.8.8", "default"),
])
def test_route_to_longest_prefix(ip, destination):
    assert parse_inventory(ok(LAB_NODE_1)).route_to(ip).destination == destination


def test_route_to_prefers_host_route_and_sees_blackholes():
    inv = parse_inventory(ok(CALICO_NODE))
    assert inv.route_to("10.244.1.5") == Route("10.244.1.5/32", "cali1234")
    assert inv.route_to("10.244.1.9") == Route("10.244.1.0/26", None)  # no pod: blackholed
    assert inv.route_to("10.244.2.3") == Route("10.244.2.0/26", "tunl0", "10.0.1.11")


def test_route_to_none_without_default():
    assert parse_inventory(ok(GENEVE_NODE)).route_to("8.8.8.8") is None


def test_host_port_via_bridge_fdb():
    inv = parse_inventory(ok(LAB_NODE_1))
    assert inv.host_port_of("10.244.1.2").name == "vf9bb6a14bb"
    assert inv.host_port_of("10.244.1.3").name == "v62ef835bc4"
    assert inv.host_port_of("10.244.1.4").name == "vba8e8bc8c4"


def test_host_port_via_host_route():
    inv = parse_inventory(ok(CALICO_NODE))
    assert inv.host_port_of("10.244.1.5").name == "cali1234"
    assert inv.host_port_of("10.244.1.6").name == "cali5678"
    assert parse_inventory(ok(LAB_NODE_2_EXTRA)).host_port_of("10.244.2.77").name == "cali1234"


def test_host_port_unknown():
    lab = parse_inventory(ok(LAB_NODE_1))
    assert lab.host_port_of("10.244.2.0") is None  # neighbour on the vxlan, not a pod port
    assert lab.host_port_of("10.244.2.5") is None  # remote pod
    assert lab.host_port_of("10.244.1.99") is None  # no neighbour entry
    no_fdb = parse_inventory(ok(LAB_NODE_2_EXTRA))
    assert no_fdb.host_port_of("10.244.2.3") is None  # neighbour on cni0, MAC not in the fdb
    assert parse_inventory(ok(CALICO_NODE)).host_port_of("10.244.1.9") is None


def test_host_port_in_pod_is_its_veth():
    assert parse_inventory(ok(LAB_POD)).host_port_of("10.244.1.1").name == "eth0"


def test_underlay():
    assert parse_inventory(ok(LAB_NODE_1)).underlay("172.30.0.1").name == "eth0"
    calico = parse_inventory(ok(CALICO_NODE))
    assert calico.underlay("10.0.1.10").name == "ens5"
    assert calico.underlay("192.168.0.1").name == "ens5"  # not held here: the default route's device
    assert parse_inventory(ok(GENEVE_NODE)).underlay("192.168.0.1") is None


def test_local_ips():
    assert parse_inventory(ok(LAB_NODE_1)).local_ips() == {"127.0.0.1", "172.30.0.1", "10.244.1.1", "10.244.1.0"}
    assert parse_inventory(ok(LAB_POD)).local_ips() == {"127.0.0.1", "10.244.1.2"}


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("result, message", [
    (ExecResult(1, b"", b"Cannot open netlink socket: Operation not permitted\n"),
     "^inventory command exited with 1: Cannot open netlink socket"),
    (ExecResult(None, b"@@link\n", b"", ExecError(ExecErrorKind.TIMEOUT, "exec timed out after 10s")),
     "^inventory command failed: exec timed out after 10s$"),
    (ExecResult(None, b"", b"", ExecError(ExecErrorKind.MISSING_BINARY, 'exec: "sh": not found', "sh")),
     "^inventory command failed"),
    (ok("hello\n"), "truncated"),
    (ok("@@link\n@@addr\n@@route\n@@neigh\n@@fdb\n@@end\n"), "no interface list"),
    (ok("garbage\n@@end\n"), "no interface list"),
    (ok(LAB_NODE_1.split("4: flannel.1")[0] + "4: flannel.1: <BROADCAST,MULTI"), "truncated"),
    (ok(LAB_NODE_1.replace("3: cni0: <", "3: cni0 <")), "^unreadable interface line: '3: cni0 <"),
])
def test_errors(result, message):
    with pytest.raises(ValueError, match=message):
        parse_inventory(result)
