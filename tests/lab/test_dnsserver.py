"""Cluster DNS: the zone built from API objects, its answers, and the real server in a namespace."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from netdoctor.lab.dnsserver import Zone, build_zone, handle_wire

from labkit import in_netns

SERVICES = [
    {"metadata": {"name": "web", "namespace": "shop"},
     "spec": {"clusterIP": "10.96.0.20", "ports": [{"name": "http", "port": 80, "protocol": "TCP"}, {"port": 81}]}},
    {"metadata": {"name": "db", "namespace": "shop"}, "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}},
    {"metadata": {"name": "gone", "namespace": "shop"}, "spec": {"clusterIP": "None", "ports": [{"port": 1}]}},
    {"metadata": {"name": "ext", "namespace": "shop"}, "spec": {"type": "ExternalName", "externalName": "example.com"}},
]
SLICES = [{"metadata": {"name": "db-1", "namespace": "shop", "labels": {"kubernetes.io/service-name": "db"}},
           "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
           "endpoints": [{"addresses": ["10.244.1.7"], "hostname": "db-0", "conditions": {"ready": True}},
                         {"addresses": ["10.244.2.7"], "conditions": {}},
                         {"addresses": ["10.244.2.9"], "conditions": {"ready": False}}]},
          {"metadata": {"name": "gone-1", "namespace": "shop", "labels": {"kubernetes.io/service-name": "gone"}},
           "ports": [{"port": 1}], "endpoints": [{"addresses": ["10.244.2.3"], "conditions": {"ready": False}}]}]
PODS = [{"metadata": {"name": "p", "namespace": "shop"}, "status": {"podIP": "10.244.1.7"}}]


def ask(zone: Zone, name: str, rdtype: str) -> tuple[str, list[str]]:
    wire = handle_wire(zone, dns.message.make_query(name, rdtype).to_wire(), max_size=512)
    response = dns.message.from_wire(wire)
    return dns.rcode.to_text(response.rcode()), sorted(r.to_text() for rrset in response.answer for r in rrset)


@pytest.fixture(scope="module")
def zone():
    return Zone.from_json(json.loads(json.dumps(build_zone(SERVICES, SLICES, PODS))))


@pytest.mark.parametrize("name, rdtype, expected", [
    ("web.shop.svc.cluster.local", "A", ("NOERROR", ["10.96.0.20"])),
    ("WEB.shop.svc.cluster.local.", "A", ("NOERROR", ["10.96.0.20"])),
    ("_http._tcp.web.shop.svc.cluster.local", "SRV", ("NOERROR", ["0 100 80 web.shop.svc.cluster.local."])),
    ("db.shop.svc.cluster.local", "A", ("NOERROR", ["10.244.1.7", "10.244.2.7"])),
    ("db-0.db.shop.svc.cluster.local", "A", ("NOERROR", ["10.244.1.7"])),
    ("_pg._tcp.db.shop.svc.cluster.local", "SRV", ("NOERROR", [
        "0 100 5432 10-244-2-7.db.shop.svc.cluster.local.", "0 100 5432 db-0.db.shop.svc.cluster.local."])),
    ("10-244-1-7.shop.pod.cluster.local", "A", ("NOERROR", ["10.244.1.7"])),
    ("ext.shop.svc.cluster.local", "A", ("NOERROR", ["example.com."])),
    ("20.0.96.10.in-addr.arpa", "PTR", ("NOERROR", ["web.shop.svc.cluster.local."])),
    ("web.shop.svc.cluster.local", "AAAA", ("NOERROR", [])),
    ("shop.svc.cluster.local", "A", ("NOERROR", [])),
    ("gone.shop.svc.cluster.local", "A", ("NXDOMAIN", [])),
    ("nope.shop.svc.cluster.local", "A", ("NXDOMAIN", [])),
    ("_81._tcp.web.shop.svc.cluster.local", "SRV", ("NXDOMAIN", [])),
    ("example.com", "A", ("REFUSED", [])),
])
def test_answers(zone, name, rdtype, expected):
    assert ask(zone, name, rdtype) == expected


def test_negative_answers_carry_the_soa_with_the_ttl(zone):
    response = dns.message.from_wire(handle_wire(
        zone, dns.message.make_query("nope.shop.svc.cluster.local", "A").to_wire(), max_size=512))
    assert response.authority[0].rdtype == dns.rdatatype.SOA and response.authority[0].ttl == 5


def test_override_replaces_a_records():
    data = {**build_zone(SERVICES, SLICES, PODS), "overrides": {"web.shop.svc.cluster.local.": ["10.96.9.9"]}}
    assert ask(Zone.from_json(data), "web.shop.svc.cluster.local", "A") == ("NOERROR", ["10.96.9.9"])


def test_oversized_udp_answer_is_truncated():
    slices = [{**SLICES[0], "endpoints": [{"addresses": [f"10.244.3.{i}"], "conditions": {}} for i in range(1, 100)]}]
    wire = handle_wire(Zone.from_json(build_zone(SERVICES, slices, [])),
                       dns.message.make_query("db.shop.svc.cluster.local", "A").to_wire(), max_size=512)
    assert dns.message.from_wire(wire).flags & dns.flags.TC


# ---- the real server in a namespace -------------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")


def udp(name: str, rdtype: str, timeout: float = 0.3) -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, rdtype), "10.0.0.1", port=53, timeout=timeout)


def first_answer(deadline: float):
    """Poll until the server answers (it needs a moment to start)."""
    while True:
        try:
            return udp("web.shop.svc.cluster.local", "A", timeout=0.05)
        except dns.exception.Timeout:
            if time.monotonic() > deadline:
                raise


def write_zone(path, data) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


@pytest.fixture
def dns_pod(tmp_path):
    """A server namespace running the DNS server at 10.0.0.1 and a client namespace at 10.0.0.2."""
    prefix = f"ndt{secrets.token_hex(3)}"
    server_ns, client_ns = f"{prefix}-dns", f"{prefix}-cli"
    zone_file = tmp_path / "zone.json"
    write_zone(zone_file, build_zone(SERVICES, SLICES, PODS))
    proc = None
    try:
        for ns, ip in ((server_ns, "10.0.0.1"), (client_ns, "10.0.0.2")):
            subprocess.run(["ip", "netns", "add", ns], check=True)
            subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", server_ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
                        "netns", client_ns], check=True)
        for ns, ip in ((server_ns, "10.0.0.1"), (client_ns, "10.0.0.2")):
            subprocess.run(["ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0"], check=True)
            subprocess.run(["ip", "-n", ns, "link", "set", "eth0", "up"], check=True)
        started = time.monotonic()
        proc = subprocess.Popen(["ip", "netns", "exec", server_ns, sys.executable, "-m", "netdoctor.lab.dnsserver",
                                 "--zone", str(zone_file), "--listen", "0.0.0.0", "--port", "53"],
                                stderr=subprocess.PIPE, text=True)
        yield {"client": client_ns, "proc": proc, "zone": zone_file, "started": started}
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        for ns in (client_ns, server_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@needs_root
@pytest.mark.lab
def test_server_answers_over_udp_and_tcp_reloads_and_stops(dns_pod):
    client = dns_pod["client"]
    first = in_netns(client, first_answer, dns_pod["started"] + 3)
    assert time.monotonic() - dns_pod["started"] < 1.5  # includes `ip netns exec` and interpreter start
    assert [r.to_text() for r in first.answer[0]] == ["10.96.0.20"] and first.answer[0].ttl == 5
    assert first.flags & dns.flags.AA
    srv = in_netns(client, udp, "_pg._tcp.db.shop.svc.cluster.local", "SRV")
    assert len(srv.answer[0]) == 2
    assert in_netns(client, udp, "nope.shop.svc.cluster.local", "A").rcode() == dns.rcode.NXDOMAIN
    assert in_netns(client, udp, "example.com", "A").rcode() == dns.rcode.REFUSED
    tcp = in_netns(client, dns.query.tcp, dns.message.make_query("db.shop.svc.cluster.local", "A"), "10.0.0.1", 0.5)
    assert sorted(r.to_text() for r in tcp.answer[0]) == ["10.244.1.7", "10.244.2.7"]

    write_zone(dns_pod["zone"], {**build_zone(SERVICES, SLICES, PODS),
                                 "overrides": {"web.shop.svc.cluster.local.": ["10.96.9.9"]}})
    deadline = time.monotonic() + 2
    while in_netns(client, udp, "web.shop.svc.cluster.local", "A").answer[0][0].to_text() != "10.96.9.9":
        assert time.monotonic() < deadline, "zone change not picked up"
        time.sleep(0.05)

    dns_pod["proc"].send_signal(signal.SIGTERM)
    assert dns_pod["proc"].wait(timeout=2) == 0
