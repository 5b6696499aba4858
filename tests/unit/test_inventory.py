"""Host inventory: `inventory_script()` output parsed into an Inventory (real JSON captured from a
lab's nodes and pod, hand-made JSON in iproute2 6.x's shape for what the lab kernel can't build; see
data/inventory/README.md), the lookups the judge makes on it, what an unreadable entry costs, and
conntrack's XML parsed into NatEntries."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from netdoctor.observations import InterfaceKind, Inventory, NatEntry, Route
from netdoctor.probe.inventory import conntrack_script, inventory_script, parse_conntrack, parse_inventory, relayed

DATA = Path(__file__).parent / "data" / "inventory"
NODE = "lab-node-2.txt"  # flannel-like: cni0 bridge, flannel.1 vxlan, eth0 to the fabric, 3 pod veths
NODE_EXTRA = "lab-node-1-extra.txt"  # plus cali1234, typed and multipath routes; pod MACs aged out
POD = "lab-pod.txt"
CALICO = "calico-node.txt"
GENEVE = "geneve-node.txt"


def raw(name: str) -> str:
    return (DATA / name).read_text()


def inventory(name: str):
    return parse_inventory((DATA / name).read_bytes())


def by_name(name: str) -> dict:
    return {i.name: i for i in inventory(name).interfaces}


def run_script(env: dict | None = None) -> bytes:
    """The script as the capture runs it: stdout and stderr in one stream."""
    done = subprocess.run([shutil.which("bash") or "/bin/bash", "-c", f"( {'; '.join(inventory_script())} ) 2>&1"], check=False, capture_output=True,
                          timeout=30, env=env)
    assert done.returncode == 0, done
    return done.stdout


def section(text: str, marker: str) -> str:
    """The JSON under `marker` in a fixture."""
    return text.split(marker + "\n", 1)[1].split("\n@@", 1)[0].strip()


def with_section(text: str, marker: str, body: str) -> bytes:
    return text.replace(section(text, marker), body, 1).encode()


# ---------------------------------------------------------------- the script


def test_script_asks_iproute2_for_json_and_drops_each_commands_stderr():
    during, after, printed = inventory_script()
    for command in ("ip -j -d link show", "ip -j -4 addr show", "ip -j -4 route show table main"):
        assert f"{command} 2>/dev/null" in during  # what the traffic does not change: while it runs
    for command in ("ip -j -4 neigh show", "bridge -j fdb show"):
        assert f"{command} 2>/dev/null" in after  # what it teaches: after it
    assert printed.index("@@link") < printed.index("@@addr") < printed.index("@@route") < printed.index("@@neigh") \
        < printed.index("@@fdb") < printed.index("@@end")


@pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2")
def test_script_runs_and_parses_here():
    """Read-only: the script runs under bash and its output parses (loopback always exists)."""
    inv = parse_inventory(run_script())
    assert any(i.kind is InterfaceKind.LOOPBACK for i in inv.interfaces)
    assert "127.0.0.1" in inv.local_ips()


def tools(tmp_path: Path, *names: str) -> dict:
    for tool in names:
        os.symlink(shutil.which(tool), tmp_path / tool)
    return {"PATH": str(tmp_path)}


@pytest.mark.skipif(shutil.which("ip") is None, reason="needs iproute2")
def test_script_without_bridge_binary_still_succeeds(tmp_path):
    inv = parse_inventory(run_script(tools(tmp_path, "sh", "ip", "cat")))
    assert inv.fdb == () and inv.interfaces


def test_script_without_ip_binary_has_no_interface_list(tmp_path):
    with pytest.raises(ValueError, match="^inventory output has no interface list$"):
        parse_inventory(run_script(tools(tmp_path, "sh", "cat")))


FAKE_IP = """#!/bin/sh
# iproute2 that complains on stderr in the middle of its JSON, as `ip link` did on a real node for a
# probe veth whose peer namespace an earlier run was deleting.
case "$*" in *link*) f=link ;; *addr*) f=addr ;; *route*) f=route ;; *neigh*) f=neigh ;; *) exit 1 ;; esac
head -c 300 "$DATA/$f"
echo "Error: Peer netns reference is invalid." >&2
tail -c +301 "$DATA/$f"
exit 2
"""


def test_stderr_noise_from_ip_never_reaches_the_json(tmp_path):
    text = raw(NODE)
    for marker in ("link", "addr", "route", "neigh"):
        (tmp_path / marker).write_text(section(text, "@@" + marker))
    (tmp_path / "ip").write_text(FAKE_IP)
    (tmp_path / "ip").chmod(0o755)
    env = {**tools(tmp_path, "sh", "head", "tail", "cat"), "DATA": str(tmp_path)}
    out = run_script(env)
    assert b"Peer netns" not in out
    expected = inventory(NODE)
    # no `bridge` binary here: the FDB is unknown, not empty
    assert parse_inventory(out) == Inventory(expected.interfaces, expected.routes, expected.neighbours, (),
                                             unread=("fdb",))


# ---------------------------------------------------------------- interfaces


def test_lab_node_interfaces():
    ifs = by_name(NODE)
    assert list(ifs) == ["lo", "eth0", "cni0", "flannel.1", "vfa2158d3a4", "v1326beb19b", "ve236fb62d7"]
    assert {n: i.kind for n, i in ifs.items() if n in ("lo", "eth0", "cni0", "flannel.1")} == {
        "lo": InterfaceKind.LOOPBACK, "eth0": InterfaceKind.VETH,
        "cni0": InterfaceKind.BRIDGE, "flannel.1": InterfaceKind.OVERLAY,
    }
    port = ifs["vfa2158d3a4"]
    assert (port.index, port.kind, port.master, port.mtu, port.up) == (5, InterfaceKind.VETH, "cni0", 1450, True)
    assert ifs["eth0"].master is None and ifs["eth0"].link is None  # a veth's peer index is no underlay


def test_vxlan_port_and_underlay_device():
    vxlan = by_name(NODE)["flannel.1"]
    assert (vxlan.overlay_port, vxlan.link, vxlan.mtu) == (8472, "eth0", 1450)
    assert vxlan.tunnel == "vxlan"
    calico = by_name(CALICO)["vxlan.calico"]
    assert (calico.overlay_port, calico.link) == (4789, "ens5")


def test_addresses_with_prefix():
    ifs = by_name(NODE)
    assert ifs["cni0"].addresses == ("10.244.2.1/24",)
    assert ifs["flannel.1"].addresses == ("10.244.2.0/32",)
    assert ifs["vfa2158d3a4"].addresses == ()
    geneve = by_name(GENEVE)
    assert geneve["kube-ipvs0"].addresses == ("10.96.0.10/32", "10.96.0.1/32")
    assert geneve["wg0"].addresses == ("10.250.0.1/32",)  # the local side of a peer address


def test_down_interface_and_peerless_tunnel():
    ifs = by_name(NODE_EXTRA)
    assert ifs["calipeer"].up is False and ifs["cali1234"].up is True
    calico = by_name(CALICO)
    assert "tunl0" in calico and "cali1234" in calico  # `"link": null`, `"link_index": 3`


def test_calico_kinds():
    ifs = by_name(CALICO)
    assert ifs["ens5"].kind is InterfaceKind.DEVICE and ifs["ens5"].mtu == 9001  # altnames are no kind
    assert ifs["tunl0"].kind is InterfaceKind.OVERLAY and ifs["tunl0"].overlay_port is None
    assert ifs["tunl0"].tunnel == "ipip"
    assert ifs["cali5678"].kind is InterfaceKind.VETH


def test_geneve_wireguard_and_dummy():
    ifs = by_name(GENEVE)
    assert ifs["gnv0"].kind is InterfaceKind.OVERLAY and ifs["gnv0"].overlay_port == 6081
    assert ifs["cilium_geneve"].kind is InterfaceKind.OVERLAY and ifs["cilium_geneve"].overlay_port is None
    assert ifs["cilium_geneve"].tunnel == "geneve"
    assert ifs["wg0"].kind is InterfaceKind.OVERLAY
    assert ifs["kube-ipvs0"].kind is InterfaceKind.DEVICE and ifs["kube-ipvs0"].up is False


def test_index_lookup_for_pcap_names():
    inv = inventory(NODE)
    assert inv.by_index(4).name == "flannel.1"
    assert inv.names()[5] == "vfa2158d3a4"


# ---------------------------------------------------------------- routes, neighbours, fdb


def test_routes():
    assert inventory(NODE).routes == (
        Route("default", "eth0", "172.30.0.254"),
        Route("10.244.1.0/24", "flannel.1", "10.244.1.0"),
        Route("10.244.2.0/24", "cni0"),
        Route("172.30.0.0/24", "eth0"),
    )


def test_typed_multipath_and_host_routes():
    routes = {r.destination: r for r in inventory(NODE_EXTRA).routes}
    assert routes["10.98.0.0/16"] == Route("10.98.0.0/16", None)  # unreachable
    assert routes["10.97.0.0/16"] == Route("10.97.0.0/16", None)  # prohibit
    assert routes["10.244.9.0/26"] == Route("10.244.9.0/26", None)  # blackhole
    assert routes["10.99.0.0/24"] == Route("10.99.0.0/24", "eth0", "172.30.0.254")  # first nexthop
    assert routes["10.244.1.77/32"] == Route("10.244.1.77/32", "cali1234")


def test_neighbours_need_a_mac():
    assert inventory(NODE_EXTRA).neighbours == (  # not the INCOMPLETE .99 nor the FAILED .98
        ("10.244.1.3", "86:d6:d7:e5:3e:e7", "cni0"),
        ("10.244.1.2", "6a:66:3c:17:aa:49", "cni0"),
        ("10.244.1.4", "46:a0:4d:44:ba:2a", "cni0"),
        ("172.30.0.2", "4e:0f:c1:d6:76:57", "eth0"),
        ("10.244.2.0", "02:4e:44:00:00:02", "flannel.1"),
    )


def test_fdb_keeps_bridge_ports_only():
    fdb = inventory(NODE).fdb
    assert ("fa:70:f2:7e:92:cf", "ve236fb62d7") in fdb
    assert {port for _, port in fdb} == {"vfa2158d3a4", "v1326beb19b", "ve236fb62d7"}  # no self, no cni0
    extra = inventory(NODE_EXTRA)
    assert ("02:4e:44:00:00:02", "flannel.1") not in extra.fdb  # a vxlan's `dst … self` entry is no port
    assert not {mac for mac, _ in extra.fdb} & {mac for _, mac, _ in extra.neighbours}  # aged out


def test_missing_bridge_tool_gives_empty_fdb():
    inv = inventory(CALICO)
    assert inv.fdb == () and len(inv.interfaces) == 6


# ---------------------------------------------------------------- lookups


@pytest.mark.parametrize("ip, destination", [
    ("10.244.2.7", "10.244.2.0/24"),
    ("10.244.1.9", "10.244.1.0/24"),
    ("172.30.0.1", "172.30.0.0/24"),
    ("8.8.8.8", "default"),
])
def test_route_to_longest_prefix(ip, destination):
    assert inventory(NODE).route_to(ip).destination == destination


def test_route_to_prefers_host_route_and_sees_blackholes():
    inv = inventory(CALICO)
    assert inv.route_to("10.244.1.5") == Route("10.244.1.5/32", "cali1234")
    assert inv.route_to("10.244.1.9") == Route("10.244.1.0/26", None)  # no pod: blackholed
    assert inv.route_to("10.244.2.3") == Route("10.244.2.0/26", "tunl0", "10.0.1.11")


def test_route_to_none_without_default():
    assert inventory(GENEVE).route_to("8.8.8.8") is None


def test_host_port_via_bridge_fdb():
    inv = inventory(NODE)
    assert inv.host_port_of("10.244.2.4").name == "ve236fb62d7"
    assert inv.host_port_of("10.244.2.3").name == "v1326beb19b"


def test_host_port_via_host_route():
    inv = inventory(CALICO)
    assert inv.host_port_of("10.244.1.5").name == "cali1234"
    assert inv.host_port_of("10.244.1.6").name == "cali5678"
    assert inventory(NODE_EXTRA).host_port_of("10.244.1.77").name == "cali1234"


def test_host_port_unknown():
    lab = inventory(NODE)
    assert lab.host_port_of("10.244.1.0") is None  # neighbour on the vxlan, not a pod port
    assert lab.host_port_of("10.244.1.5") is None  # remote pod
    assert lab.host_port_of("10.244.2.2") is None  # no neighbour entry
    aged = inventory(NODE_EXTRA)
    assert aged.host_port_of("10.244.1.3") is None  # neighbour on cni0, MAC no longer in the fdb
    assert inventory(CALICO).host_port_of("10.244.1.9") is None


def test_host_port_in_pod_is_its_veth():
    assert inventory(POD).host_port_of("10.244.2.1").name == "eth0"


def test_underlay():
    assert inventory(NODE).underlay("172.30.0.2").name == "eth0"
    calico = inventory(CALICO)
    assert calico.underlay("10.0.1.10").name == "ens5"
    assert calico.underlay("192.168.0.1").name == "ens5"  # not held here: the default route's device
    assert inventory(GENEVE).underlay("192.168.0.1") is None


def test_local_ips():
    assert inventory(NODE).local_ips() == {"127.0.0.1", "172.30.0.2", "10.244.2.1", "10.244.2.0"}
    assert inventory(POD).local_ips() == {"127.0.0.1", "10.244.2.4"}


# ---------------------------------------------------------------- one unreadable entry costs only itself


def edited(name: str, marker: str, edit) -> bytes:
    """The fixture with one section's JSON array passed through `edit`."""
    text = raw(name)
    return with_section(text, marker, json.dumps(edit(json.loads(section(text, marker)))))


def test_an_interface_missing_its_index_or_name_is_left_out():
    def damage(links):
        del links[2]["ifindex"]  # cni0
        links[3].pop("ifname")  # flannel.1
        links[4]["ifindex"] = "5"  # vfa2158d3a4: not a number
        return links
    inv = parse_inventory(edited(NODE, "@@link", damage))
    assert [i.name for i in inv.interfaces] == ["lo", "eth0", "v1326beb19b", "ve236fb62d7"]
    assert inv.routes == inventory(NODE).routes and inv.fdb == inventory(NODE).fdb


def test_odd_fields_of_an_interface_read_as_absent():
    def damage(links):
        links[3]["linkinfo"] = "vxlan"  # flannel.1: linkinfo not an object
        links[4]["flags"] = None  # vfa2158d3a4
        links[4]["mtu"] = "1450"
        links[5]["linkinfo"]["info_kind"] = 7  # v1326beb19b
        return links
    ifs = {i.name: i for i in parse_inventory(edited(NODE, "@@link", damage)).interfaces}
    assert ifs["flannel.1"].kind is InterfaceKind.DEVICE and ifs["flannel.1"].overlay_port is None
    assert (ifs["vfa2158d3a4"].up, ifs["vfa2158d3a4"].mtu, ifs["vfa2158d3a4"].master) == (False, None, "cni0")
    assert ifs["v1326beb19b"].kind is InterfaceKind.DEVICE


def test_routes_of_an_odd_shape_are_left_out():
    def damage(routes):
        return routes + [
            {"flags": []},  # no destination
            {"dst": "10.300.0.0/16", "dev": "eth0"},  # not an address
            {"dst": "10.50.0.0/16", "gateway": "172.30.0.254", "flags": []},  # unicast, no device
            {"dst": "10.51.0.0/16", "nexthops": "eth0"},  # nexthops not a list
            {"dst": "10.52.0.0/16", "nexthops": [{"gateway": "172.30.0.9", "dev": "eth0"}], "flags": []},
        ]
    routes = parse_inventory(edited(NODE, "@@route", damage)).routes
    assert routes == inventory(NODE).routes + (Route("10.52.0.0/16", "eth0", "172.30.0.9"),)


def test_neighbours_and_fdb_entries_of_an_odd_shape_are_left_out():
    inv = parse_inventory(with_section(raw(NODE), "@@neigh", json.dumps([
        {"dst": "10.244.2.9", "lladdr": "aa:bb:cc:dd:ee:ff"},  # no device
        {"dst": "fe80::1", "dev": "cni0", "lladdr": "aa:bb:cc:dd:ee:ff"},
        {"dst": "10.244.2.3", "dev": "cni0", "lladdr": "D6:E5:2F:B7:72:CF", "state": ["STALE"]},
    ])))
    assert inv.neighbours == (("10.244.2.3", "d6:e5:2f:b7:72:cf", "cni0"),)
    assert inv.host_port_of("10.244.2.3").name == "v1326beb19b"


@pytest.mark.parametrize("body", ["", "[]", "{}", "null", "Dump terminated"])
def test_an_empty_or_unreadable_section_costs_only_itself(body):
    text = raw(NODE)
    for marker in ("@@addr", "@@route", "@@neigh", "@@fdb"):
        inv = parse_inventory(with_section(text, marker, body))
        whole = inventory(NODE)
        assert len(inv.interfaces) == 7
        assert inv.routes == (() if marker == "@@route" else whole.routes)
        assert inv.neighbours == (() if marker == "@@neigh" else whole.neighbours)
        assert inv.fdb == (() if marker == "@@fdb" else whole.fdb)
        assert inv.local_ips() == ({"127.0.0.1", "172.30.0.2", "10.244.2.1", "10.244.2.0"}
                                   if marker != "@@addr" else set())


def test_an_absent_section_costs_only_itself():
    text = raw(NODE)
    without_routes = text[:text.index("@@route")] + text[text.index("@@neigh"):]
    inv = parse_inventory(without_routes.encode())
    assert inv.routes == () and len(inv.interfaces) == 7 and inv.fdb == inventory(NODE).fdb


def test_a_dump_the_kernel_cut_short_keeps_its_complete_entries():
    """`ip` prints `[` and the entries so far, with no `]`, when a dump ends in an error."""
    text = raw(NODE)
    links = section(text, "@@link")
    cut = links[:links.index('{"ifindex":6')] + '{"ifindex":6,"link_index":2,"ifname":"v13'
    inv = parse_inventory(with_section(text, "@@link", cut))
    assert [i.name for i in inv.interfaces] == ["lo", "eth0", "cni0", "flannel.1", "vfa2158d3a4"]
    assert inv.by_name("flannel.1").overlay_port == 8472  # the entries before the cut are whole


def test_an_element_that_is_no_json_costs_only_itself():
    """iproute2 before 5.1 printed a typed route as `{"blackhole","dst":…}`."""
    text = raw(CALICO)
    routes = section(text, "@@route").replace('{"type":"blackhole",', '{"blackhole",')
    inv = parse_inventory(with_section(text, "@@route", routes))
    assert [r.destination for r in inv.routes] == [
        "default", "10.0.1.0/24", "10.244.1.5/32", "10.244.1.6/32", "10.244.2.0/26"]


def test_strings_with_brackets_and_commas_do_not_split_an_entry():
    text = raw(NODE)
    links = json.loads(section(text, "@@link"))
    links[2]["ifalias"] = 'a "quoted" [bridge], {x}\\'
    broken = json.dumps(links)[:-1]  # no closing bracket: read element by element
    assert [i.name for i in parse_inventory(with_section(text, "@@link", broken)).interfaces] == \
        [i.name for i in inventory(NODE).interfaces]


@pytest.mark.parametrize("output, message", [
    (b"hello\n", "truncated"),
    (raw(NODE).split('{"ifindex":4')[0].encode(), "truncated"),
    (b"@@link\n\n@@addr\n\n@@route\n\n@@neigh\n\n@@fdb\n\n@@end\n", "no interface list"),
    (b"garbage\n@@end\n", "no interface list"),
    (with_section(raw(NODE), "@@link", '[{"ifname":"lo"},{"ifindex":2}]'), "no interface list"),
])
def test_only_a_cut_output_or_no_interface_at_all_is_an_error(output, message):
    with pytest.raises(ValueError, match=message):
        parse_inventory(output)


# ---------------------------------------------------------------- connection tracking


def test_conntrack_script_dumps_the_table_once_for_every_source():
    """One `conntrack -L` a node, however many sources (each dump walks the whole table), its
    flows picked by grep; without grep, one listing per source."""
    started, printed = conntrack_script(["10.244.2.4", "10.244.1.60"])
    assert started.count("conntrack -L -o xml") == 1 and "8< <(" in started  # beside the inventory's fds 3-7
    assert "grep -F -e '<src>10.244.2.4</src>' -e '<src>10.244.1.60</src>'" in started
    assert started.index("conntrack -L -s 10.244.2.4 -o xml") < started.index("conntrack -L -s 10.244.1.60 -o xml")
    assert printed.startswith("echo @@conntrack;") and printed.endswith("echo @@ctend") and "<&8" in printed


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("grep", [True, False], ids=["grep", "no grep"])
def test_one_dump_keeps_the_flows_from_the_sources_and_only_those(tmp_path, grep):
    """A stand-in conntrack prints a table (one flow a line, as `-o xml` does) where a source also
    shows as another flow's reply source; the node keeps the flows it started, with or without grep."""
    table = "\n".join(['<?xml version="1.0" encoding="utf-8"?>', "<conntrack>", UDP_FLOW,
                       UDP_FLOW.replace("10.244.1.60", "10.244.9.9"), TO_SOURCE_FLOW, "</conntrack>"])
    fake = tmp_path / "conntrack"
    fake.write_text("#!/bin/bash\n"
                    f"[[ $* == *-s* ]] && {{ printf '%s\\n' '{UDP_FLOW}'; exit; }}\n"
                    f"cat <<'EOF'\n{table}\nEOF\n")
    fake.chmod(0o755)
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in ("bash", "cat") + (("grep",) if grep else ()):
        (tools / tool).symlink_to(shutil.which(tool))
    (tools / "conntrack").symlink_to(fake)
    tracking, tracked = conntrack_script(["10.244.1.60"])
    done = subprocess.run([shutil.which("bash"), "-c", f"{tracking}; {tracked}"], env={"PATH": str(tools)},
                          check=False, capture_output=True, timeout=30)
    assert done.returncode == 0, done
    entries = parse_conntrack(done.stdout.decode(), ["10.244.1.60"])
    assert [(e.src, e.dst, e.dport) for e in entries] == [("10.244.1.60", "10.96.0.10", 53)]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_listings_are_printed_with_bash_builtins_only():
    """No process per listing when the capture stops: the printing runs with an empty PATH."""
    listings = 'exec 3< <(printf \'[{"a":1}]\\n[2]\') 4< <(:)'
    script = f"{listings}; PATH=; {relayed(3)}; echo @@; {relayed(4)}; echo @@end"
    done = subprocess.run(["bash", "-c", script], check=False, capture_output=True, timeout=10)
    assert done.returncode == 0 and done.stderr == b"", done
    assert done.stdout == b'[{"a":1}]\n[2]\n@@\n\n@@end\n'


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_the_inventory_and_conntrack_snippets_run_in_one_shell():
    during, after, printed = inventory_script()
    tracking, tracked = conntrack_script(["192.0.2.77"])
    done = subprocess.run(["bash", "-c", f"{during}; {after}; {tracking}; ( {printed}; {tracked} ) 2>&1"],
                          check=False, capture_output=True, timeout=30)
    assert done.returncode == 0, done
    out = done.stdout.decode()
    assert out.index("@@link") < out.index("@@end") < out.index("@@conntrack") < out.index("@@ctend")
    assert parse_inventory(done.stdout).by_name("lo") is not None


def test_conntrack_script_takes_addresses_only():
    with pytest.raises(ValueError):
        conntrack_script(["10.244.2.4; reboot"])


def test_conntrack_xml_from_a_lab_node():
    entries = parse_conntrack(raw("lab-node-2-conntrack.txt"))
    assert len(entries) == 6
    assert NatEntry("tcp", "10.244.2.4", 38648, "10.96.68.29", 80, "10.244.1.3", 8080) in entries
    assert NatEntry("tcp", "10.244.2.4", 38678, "10.96.68.29", 80, "10.244.2.3", 8080) in entries
    service = [e for e in entries if e.dst == "10.96.68.29"]
    assert len(service) == 4 and all(e.translated for e in service)
    assert {e.reply_src for e in service} == {"10.244.1.3", "10.244.2.3"}  # both api pods
    direct = [e for e in entries if e.dst != "10.96.68.29"]
    assert {(e.dst, e.dport) for e in direct} == {("10.244.1.3", 8080), ("10.244.2.3", 8080)}
    assert not any(e.translated for e in direct)


UDP_FLOW = ('<flow><meta direction="original"><layer3 protonum="2" protoname="ipv4"><src>10.244.1.60</src>'
            '<dst>10.96.0.10</dst></layer3><layer4 protonum="17" protoname="udp"><sport>41000</sport><dport>53'
            '</dport></layer4></meta><meta direction="reply"><layer3 protonum="2" protoname="ipv4"><src>10.244.2.5'
            '</src><dst>10.244.1.60</dst></layer3><layer4 protonum="17" protoname="udp"><sport>53</sport><dport>'
            '41000</dport></layer4></meta><meta direction="independent"><timeout>29</timeout><id>1</id>'
            '<unreplied/></meta></flow>')
# A flow to the source (its reply comes from the source): `<src>10.244.1.60</src>` matches it too.
TO_SOURCE_FLOW = UDP_FLOW.replace("<src>10.244.1.60</src><dst>10.96.0.10</dst>",
                                  "<src>10.244.2.5</src><dst>10.244.1.60</dst>", 1) \
    .replace("<src>10.244.2.5</src><dst>10.244.1.60</dst></layer3><layer4 protonum=\"17\" protoname=\"udp\"><sport>53",
             "<src>10.244.1.60</src><dst>10.244.2.5</dst></layer3><layer4 protonum=\"17\" protoname=\"udp\"><sport>53")
ICMP_FLOW = ('<flow><meta direction="original"><layer3 protonum="2" protoname="ipv4"><src>10.244.1.60</src><dst>'
             '10.244.2.20</dst></layer3><layer4 protonum="1" protoname="icmp"></layer4></meta><meta direction='
             '"reply"><layer3 protonum="2" protoname="ipv4"><src>10.244.2.20</src><dst>10.244.1.60</dst></layer3>'
             '<layer4 protonum="1" protoname="icmp"></layer4></meta></flow>')


def test_conntrack_one_document_per_source_and_broken_flows_cost_only_themselves():
    lab = raw("lab-node-2-conntrack.txt")
    document = lab[lab.index("<?xml"):lab.index("@@ctend")]
    text = ("tcpdump: 3 packets captured\n@@conntrack\n" + document
            + '<?xml version="1.0" encoding="utf-8"?>\n<conntrack>\n' + ICMP_FLOW + "\n"
            + UDP_FLOW.replace("<src>10.244.2.5", "<src>10.244.2.5<") + "\n"  # broken XML
            + UDP_FLOW.replace("<src>10.244.1.60</src><dst>10.96.0.10", "<src>nowhere</src><dst>10.96.0.10")
            + "\n" + UDP_FLOW + "\n<flow><meta direction=")  # a document cut short
    entries = parse_conntrack(text)
    assert len(entries) == 7
    assert entries[-1] == NatEntry("udp", "10.244.1.60", 41000, "10.96.0.10", 53, "10.244.2.5", 53)
    assert not any(e.proto == "icmp" for e in entries)  # conntrack's XML has no echo id for a ping


def test_conntrack_nothing_without_its_marker_and_nothing_after_its_end():
    assert parse_conntrack(UDP_FLOW) == ()
    assert parse_conntrack("@@conntrack\n@@ctend\n" + UDP_FLOW) == ()


def test_a_table_the_listing_did_not_show_is_unread_not_empty():
    assert inventory(NODE).unread == ()
    empty = parse_inventory(with_section(raw(NODE), "@@fdb", "[]"))
    assert empty.fdb == () and empty.unread == ()  # an empty table was read
    missing = parse_inventory(with_section(raw(NODE), "@@route", "\n"))  # `ip route` printed nothing
    assert missing.routes == () and missing.unread == ("route",)
