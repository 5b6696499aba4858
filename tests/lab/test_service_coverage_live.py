"""The Service IP check on the lab gives the same verdict every run: with one of the api's two
backends broken, `netdoctor check svc/api` never passes and ND-SVC-001 always names the broken
backend; with both healthy it reaches both, every run.

The catalog has no fault that breaks one backend only, so the tests drop its traffic by hand with
an nftables table in the lab's node namespaces (removed after each test):
- `service-path`: every node drops connections DNATed to the backend, right after the translation.
  Its pod IP still answers, and no translated packet or conntrack entry is ever seen: the fault
  that once passed (exit 0) when every attempt happened to land on the other backend.
- `pod-unreachable`: the backend's node drops everything sent to its pod IP; the translated SYN is
  seen leaving the source's node, so the backend is shown unreachable.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest

from netdoctor.exitcodes import ExitCode
from netdoctor.lab import lifecycle, net, sh
from netdoctor.lab.state import LabConfig

from labkit import check_json, start, unique_name

pytestmark = pytest.mark.lab

RUNS = 10
TABLE = "nd-test-service-coverage"


@pytest.fixture(scope="module")
def lab():
    running = start(LabConfig(unique_name()))
    yield running
    lifecycle.down(running.name)


def api_pods(lab) -> list:
    pods = [p for p in lab.pods("shop", "app=api") if p.status.pod_ip]
    assert len(pods) == 2 and len({p.spec.node_name for p in pods}) == 2, [(p.metadata.name, p.spec.node_name) for p in pods]
    return pods


def node_netns(lab, node: str) -> str:
    return f"{net.lab_netns_prefix(lab.name)}{node}"


@contextmanager
def dropping(lab, nodes: list[str], rule: str):
    """`rule` in a forward chain after the Service DNAT (priority dstnat is -100) on `nodes`."""
    try:
        for node in nodes:
            sh.nft(node_netns(lab, node), f"table ip {TABLE} {{\n  chain forward {{\n"
                                         f"    type filter hook forward priority -10; policy accept;\n    {rule}\n  }}\n}}\n")
        yield
    finally:
        for node in nodes:
            sh.nft(node_netns(lab, node), f"table ip {TABLE} {{}}\ndelete table ip {TABLE}\n")


def service_ip_check(report: dict) -> dict:
    return next(c for layer in report["layers"] for c in layer["checks"] if c["id"] == "ND-SVC-001")


def test_the_healthy_service_reaches_every_ready_backend_every_run(lab):
    for run in range(RUNS):
        code, report, err = check_json(lab, "--timeout", "1")
        svc = service_ip_check(report)
        assert code == ExitCode.OK, (run, svc, err)
        assert svc["state"] == "pass" and svc["message"].endswith("reached 2 of 2 ready backends"), (run, svc)


@pytest.mark.parametrize("fault", ["service-path", "pod-unreachable"])
def test_a_broken_backend_is_named_every_run_and_never_passes(lab, fault):
    pods = api_pods(lab)
    broken, working = pods[1], pods[0]
    if fault == "service-path":
        nodes, rule = sorted({p.spec.node_name for p in pods}), f"ct status dnat ip daddr {broken.status.pod_ip} drop"
    else:
        nodes, rule = [broken.spec.node_name], f"ip daddr {broken.status.pod_ip} drop"
    verdicts = []
    with dropping(lab, nodes, rule):
        for _ in range(RUNS):
            code, report, err = check_json(lab, "--timeout", "1")
            verdicts.append((code, service_ip_check(report), err))
    for run, (code, svc, err) in enumerate(verdicts):
        assert code == ExitCode.CHECK_FAILED, (run, svc, err)
        assert (svc["state"], svc["cause"]) == ("fail", "backend-unreached"), (run, svc)
        assert svc["message"].startswith(broken.metadata.name), (run, svc)
        assert working.metadata.name not in svc["message"].split("(")[0], (run, svc)
