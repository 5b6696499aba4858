"""The hop-by-hop verdict on the lab, end to end: for each data-plane fault, `netdoctor check`
captures real packets at every hop and names the hop where the packet was lost (or refused) and
why; the healthy path shows every hop with request and answer; `--pcap` writes files scapy reads;
`--capture strict` fails where capture probes are forbidden and `auto` goes on blind.

Faults target node-1 (the lab's default); the source probe may run on either node, so each
expectation says which node the named hop is on relative to the fault, not to the source."""

from __future__ import annotations

import time

import pytest

from netdoctor.exitcodes import ExitCode
from netdoctor.lab import lifecycle
from netdoctor.lab.state import LabConfig

from labkit import check_json, start, unique_name

pytestmark = pytest.mark.lab

# fault -> (hop cause, kinds the named hop may have, node the hop is on: a name, "dst" for the
# destination's side, None for any)
HOPS = {
    "route-missing": (("no-route", "reply-no-route"), None, None),
    "overlay-port-blocked": (("overlay-blocked",), ("underlay",), "dst"),
    "overlay-mtu": (("mtu",), ("underlay", "overlay"), "node-1"),
    "kube-proxy-stale": (("untranslated",), ("veth", "bridge", "overlay", "underlay"), "node-1"),
    "policy-deny-ingress": (("policy-ingress",), ("veth", "bridge"), "dst"),
    "app-bind-localhost": (("refused-by-pod",), ("veth", "pod"), "dst"),
    # The shop's policy admits the api pods' named port only: a SYN to the wrong port is dropped
    # by that NetworkPolicy before the pod, as a real cluster enforcing it would do.
    "target-port-wrong": (("policy-ingress",), ("veth", "bridge"), "dst"),
    "dns-down": (("no-endpoints",), ("veth", "bridge", "pod"), None),
    "dns-lossy": (("destination-drop",), ("veth", "bridge"), "dst"),
    "node-down": (("node-not-ready",), ("underlay",), "node-2"),
}
REROLLED = ("app-bind-localhost",)  # faults that replace the api pods


@pytest.fixture(scope="module")
def lab():
    running = start(LabConfig(unique_name()))
    yield running
    lifecycle.down(running.name)


def dns_endpoints(lab) -> list:
    from kubernetes import client

    _, api_client = lab.api()
    slices = client.DiscoveryV1Api(api_client).list_namespaced_endpoint_slice(
        "kube-system", label_selector="kubernetes.io/service-name=kube-dns").items
    return [e for s in slices for e in s.endpoints or []]


def shown(path: dict) -> list[str]:
    """The path as lines, for assertion messages."""
    return [path.get("summary", "")] + [
        f"{h['label']} ({h['kind']}): request={h['request']} reply={h['reply']} {h['note']} {h['blind'] or ''}"
        for h in path.get("hops", [])]


def test_healthy_path_shows_every_hop_with_request_and_answer(lab):
    code, report, err = check_json(lab)
    assert code == ExitCode.OK, err
    path = report["diagnosis"]["path"]
    assert path["outcome"] == "delivered" and path["cause"] == "delivered", shown(path)
    hops = path["hops"]
    kinds = [h["kind"] for h in hops]
    assert kinds == ["pod", "veth", "bridge", "overlay", "underlay", "underlay", "overlay", "bridge", "veth"], shown(path)
    assert all(h["request"] and h["reply"] == "answer" for h in hops), shown(path)
    assert any(h["note"].startswith("DNAT") for h in hops) and any("VXLAN" in h["note"] for h in hops), shown(path)
    assert report["capture"]["blind"] == [] and len(report["capture"]["points"]) >= 3
    spread = next(c for layer in report["layers"] for c in layer["checks"] if c["id"] == "ND-SVC-001")["evidence"]
    assert any(line.startswith("spread: api-") for line in spread), spread


@pytest.mark.parametrize("fault", sorted(HOPS))
def test_hop_of_loss_and_cause(lab, fault):
    lifecycle.break_fault(lab.name, fault, None)
    try:
        time.sleep(2.0 if fault in REROLLED else 0.8)
        if fault == "dns-down":  # no DNS endpoint left in the Service rules: then they reject
            lab.wait(lambda: not lab.pods("kube-system") and not dns_endpoints(lab), timeout=10, what="coredns gone")
            time.sleep(1.0)
        code, report, err = check_json(lab)
    finally:
        lifecycle.fix_faults(lab.name, fault)
        time.sleep(2.0 if fault in REROLLED else 0.8)
    assert code == ExitCode.CHECK_FAILED, err
    causes, kinds, node = HOPS[fault]
    path = report["diagnosis"]["path"]
    assert path is not None, report["diagnosis"]
    assert path["cause"] in causes, shown(path)
    hop = path["hops"][path["at"]]
    if kinds:
        assert hop["kind"] in kinds, shown(path)
    if node == "dst":
        assert hop["node"] == path["hops"][-1]["node"], shown(path)
    elif node:
        assert node in (hop["node"], path["params"].get("node")), shown(path)
    assert hop["label"] in path["summary"] or path["params"].get("node", "?") in path["summary"], shown(path)


def test_pcap_files_open_with_scapy_and_hold_the_probes_packets(lab, tmp_path):
    from scapy.layers.inet import IP, TCP
    from scapy.utils import rdpcap

    code, report, err = check_json(lab, "--pcap", str(tmp_path / "pcaps"))
    assert code == ExitCode.OK, err
    files = sorted(p.name for p in (tmp_path / "pcaps").iterdir())
    points = report["capture"]["points"]
    for point in points:
        assert f"{point.replace(' ', '-')}_all.pcap" in files, files
    path = report["diagnosis"]["path"]
    cluster_ip, port = path["flow"].split(" → ")[1].split()[0].split(":")
    veth = next(h for h in path["hops"] if h["kind"] == "veth")
    on_veth = rdpcap(str(tmp_path / "pcaps" / f"{veth['node']}_{veth['interface']}.pcap"))
    syns = [p for p in on_veth if p.haslayer(TCP) and p[TCP].flags == "S" and p[TCP].dport == int(port)
            and p[IP].dst == cluster_ip]
    assert syns, f"no SYN to {cluster_ip}:{port} on {veth['label']}"
    source = rdpcap(str(tmp_path / "pcaps" / "probe-source_eth0.pcap"))
    assert any(p.haslayer(TCP) and p[IP].dst == cluster_ip for p in source)


@pytest.fixture
def baseline_shop(lab):
    """The shop namespace under PodSecurity "baseline": no NET_RAW, no hostNetwork."""
    v1, _ = lab.api()
    label = "pod-security.kubernetes.io/enforce"
    v1.patch_namespace("shop", {"metadata": {"labels": {label: "baseline"}}})
    yield
    v1.patch_namespace("shop", {"metadata": {"labels": {label: None}}})


def test_capture_strict_fails_where_pod_security_forbids_capture(lab, baseline_shop):
    code, report, err = check_json(lab, "--capture", "strict")
    assert code == ExitCode.PROBES, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "PodSecurity" in err and "--capture auto" in err and "Traceback" not in err, err
    assert len(lines) <= 2, err


def test_capture_auto_goes_on_blind_and_says_where(lab, baseline_shop):
    code, report, err = check_json(lab)
    assert code == ExitCode.OK, err
    assert report["state"] == "pass"
    blind = report["capture"]["blind"]
    assert any(b.startswith("probe source:") and "NET_RAW" in b for b in blind), blind
    assert any(b.startswith("node-1:") for b in blind) and any(b.startswith("node-2:") for b in blind), blind


def test_capture_namespace_keeps_the_node_hops_visible(lab, baseline_shop):
    code, report, err = check_json(lab, "--capture-namespace", "kube-system")
    assert code == ExitCode.OK, err
    assert report["capture"]["points"] and set(report["capture"]["points"]) == {"node-1", "node-2"}
    path = report["diagnosis"]["path"]
    assert path["outcome"] == "delivered", shown(path)
    first, second = path["hops"][:2]
    assert first["kind"] == "pod" and "NET_RAW" in first["blind"], shown(path)  # its own eth0: not captured
    assert second["kind"] == "veth" and second["request"] and second["reply"] == "answer", shown(path)
