"""The hop-by-hop verdict on the lab, end to end: for each data-plane fault, `netdoctor check`
captures real packets at every hop and names the hop where the packet was lost (or refused) and
why; the healthy path shows every hop with request and answer; `--pcap` writes files scapy reads;
`--capture strict` fails where capture probes are forbidden and `auto` goes on blind.

Faults target node-1 (the lab's default); the source probe may run on either node, so each
expectation says which node the named hop is on relative to the fault, not to the source."""

from __future__ import annotations

import json
import time
from io import StringIO

import pytest

from netdoctor.cli import main
from netdoctor.environment import Environment
from netdoctor.exitcodes import ExitCode
from netdoctor.lab import lifecycle
from netdoctor.lab.state import LabConfig

from labkit import start, unique_name

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


def check(lab, *extra) -> tuple[int, dict, str]:
    out, err = StringIO(), StringIO()
    code = main(["check", "svc/api", "-n", "shop", "--kubeconfig", lab.kubeconfig, "-o", "json", *extra],
                Environment(stdout=out, stderr=err, environ={"NO_COLOR": "1"}))
    return code, (json.loads(out.getvalue()) if out.getvalue() else {}), err.getvalue()


def shown(path: dict) -> list[str]:
    """The path as lines, for assertion messages."""
    return [path.get("summary", "")] + [
        f"{h['label']} ({h['kind']}): request={h['request']} reply={h['reply']} {h['note']} {h['blind'] or ''}"
        for h in path.get("hops", [])]


def test_healthy_path_shows_every_hop_with_request_and_answer(lab):
    code, report, err = check(lab)
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
        code, report, err = check(lab)
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
