"""`netdoctor check` on the lab, end to end through the official client: for every fault in the
catalog the report's broken layer is the root cause's, the summary names the cause and, for the
faults that go through the nodes' NetworkPolicy table, the hop where the packet was stopped; those
faults run again in a lab that rejects like kube-router (`lab up --policy reject`). The healthy shop
passes every layer with no WARN in both; no probe is left behind (success, failure, SIGINT)."""

from __future__ import annotations

import json
import signal
from io import StringIO

import pytest

from netdoctor.cli import main
from netdoctor.environment import Environment
from netdoctor.exitcodes import ExitCode
from netdoctor.lab import lifecycle
from netdoctor.lab.faults import CATALOG
from netdoctor.lab.state import LabConfig

from faultkit import (
    PASSING, PATH_CAUSES, POLICY_HOPS, VERDICTS, WHOLE_PATHS, all_states, assert_lost_at, assert_paths_whole,
    assert_stopped_by_policy, failing, healthy, settle, shown,
)
from labkit import check_json, check_process, run_objects, start, unique_name

pytestmark = pytest.mark.lab

RUNS = 3  # checks per injected fault: the same fault must give the same verdict every run
# Run in reject mode too: those, icmp-blocked (its own node firewall drops pings in both modes;
# the shop's policies decide which pings the check sends) and policy-lag (rejects, not drops).
REJECT_FAULTS = (*sorted(POLICY_HOPS), "icmp-blocked", "policy-lag")
CASES = [("drop", fault) for fault in sorted(VERDICTS)] + [("reject", fault) for fault in REJECT_FAULTS]


def test_every_fault_has_a_verdict_and_a_path():
    assert set(VERDICTS) == set(CATALOG) == set(PATH_CAUSES) | set(POLICY_HOPS)


@pytest.fixture(scope="module")
def labs():
    """One lab per policy mode, built when a test first needs it, torn down with the module."""
    running = {}

    def get(mode: str):
        if mode not in running:
            running[mode] = start(LabConfig(unique_name(), policy=mode))
        return running[mode]

    yield get
    for each in running.values():
        lifecycle.down(each.name)


@pytest.fixture(scope="module")
def lab(labs):
    return labs("drop")



@pytest.mark.parametrize("mode", ["drop", "reject"])
def test_healthy_shop_passes_every_layer(labs, mode):
    lab = labs(mode)
    code, report, err = check_json(lab)
    assert code == ExitCode.OK, (err, failing(report))
    assert report["state"] == "pass", (report["diagnosis"], failing(report))
    assert all_states(report) <= {"pass", "skip"}, (report["diagnosis"], failing(report))
    skipped = [c["id"] for layer in report["layers"] for c in layer["checks"] if c["state"] == "skip"]
    assert skipped == ["ND-SVC-002"]  # not a NodePort Service
    assert run_objects(lab) == []


@pytest.mark.parametrize("mode,fault", CASES, ids=[f"{m}-{f}" for m, f in CASES])
def test_check_names_the_broken_layer_and_cause(labs, mode, fault):
    """Every run of the check on the same fault: the root cause's layer, the cause, the hop."""
    lab = labs(mode)
    lab._before = {p.metadata.name for p in lab.pods("shop", "app=api")}
    lifecycle.break_fault(lab.name, fault, None)
    try:
        settle(lab, fault)
        runs = [check_json(lab) for _ in range(RUNS)]
    finally:
        lab._before = {p.metadata.name for p in lab.pods("shop", "app=api")}
        lifecycle.fix_faults(lab.name, fault)
        settle(lab, fault)
        lab.wait(lambda: healthy(lab), timeout=15, what="the shop to be healthy again")
    for run, (code, report, err) in enumerate(runs, 1):
        diagnosis = report["diagnosis"]
        assert (diagnosis["layer"], diagnosis["check_id"], diagnosis["cause"]) == VERDICTS[fault], (
            f"run {run}/{RUNS}", err, shown(diagnosis), failing(report))
        assert code == (ExitCode.OK if fault in PASSING else ExitCode.CHECK_FAILED), f"run {run}/{RUNS}"
        if fault in POLICY_HOPS:
            assert_stopped_by_policy(diagnosis, mode, POLICY_HOPS[fault])
        else:
            assert_lost_at(diagnosis, PATH_CAUSES[fault])
        if fault in WHOLE_PATHS:
            assert_paths_whole(report)
    assert run_objects(lab) == []


def test_a_node_whose_clock_is_off_moves_no_hop(lab):
    """node-2's clock 2 s behind node-1's (the lab's tcpdump there stamps its packets so, as a node
    whose time sync stopped does): the check reads the offset from the packets both nodes saw, says
    so, and draws the deny policy's drop where it is with one clock, at node-2's veth of the api
    pod, not at node-2's eth0 (where its packets' times alone would put it)."""
    lifecycle.break_fault(lab.name, "policy-deny-ingress", None)
    try:
        _, one_clock, _ = check_json(lab)
        lifecycle.break_fault(lab.name, "node-clock-skew", None)
        try:
            code, skewed, err = check_json(lab)
        finally:
            lifecycle.fix_faults(lab.name, "node-clock-skew")
    finally:
        lifecycle.fix_faults(lab.name, "policy-deny-ingress")
        lab.wait(lambda: healthy(lab), timeout=15, what="the shop to be healthy again")
    assert code == ExitCode.CHECK_FAILED, err
    assert (one_clock["capture"]["clocks"], skewed["capture"]["clocks"]) == ([], [
        "node-2's clock is 2.0 s behind node-1's (from the packets both captured): its packet times are read on "
        "node-1's clock"])

    def drawn(report):
        path = report["diagnosis"]["path"]
        return path["cause"], path["at"], [(h["node"], h["kind"], h["request"], h["reply"]) for h in path["hops"]]

    assert drawn(skewed) == drawn(one_clock), (shown(one_clock["diagnosis"]), shown(skewed["diagnosis"]))
    assert_stopped_by_policy(skewed["diagnosis"], "drop", "ingress")
    assert run_objects(lab) == []


@pytest.mark.parametrize("mode", ["drop", "reject"])
def test_probes_the_policy_learns_late_are_looked_at_again_not_blamed(labs, mode):
    """Every node's policy admits a new pod 0.9 s after it gets its IP: the probes' first SYNs to the
    api pods are dropped (resent after 1 s) or rejected. Without capture (PodSecurity baseline) only
    the retransmission's second, or the refusal, shows it. The check looks again once the probes
    have been known long enough, passes, and its evidence says what it set aside. A run whose
    Service step started after the lag has nothing to set aside: up to three runs, until one has."""
    lab = labs(mode)
    v1, _ = lab.api()
    label = "pod-security.kubernetes.io/enforce"
    v1.patch_namespace("shop", {"metadata": {"labels": {label: "baseline"}}})
    lifecycle.break_fault(lab.name, "policy-lag", None)
    seconds = []
    try:
        for _ in range(3):
            # An earlier probe still on its way out can hand its IP, already admitted, to a new one.
            lab.wait(lambda: run_objects(lab) == [], timeout=10, what="earlier probes to be gone")
            code, report, err = check_json(lab)
            assert code == ExitCode.OK and report["state"] == "pass", (err, report["diagnosis"], failing(report))
            evidence = [line for layer in report["layers"] for c in layer["checks"] for line in c["evidence"]]
            seconds = [line for line in evidence if "judged on a second look" in line]
            if seconds:
                break
    finally:
        lifecycle.fix_faults(lab.name, "policy-lag")
        v1.patch_namespace("shop", {"metadata": {"labels": {label: None}}})
    assert seconds, evidence  # the lag did bite: a first look was set aside
    assert run_objects(lab) == []


def test_sigint_cleans_up(lab):
    proc = check_process(lab)
    lab.wait(lambda: run_objects(lab), timeout=10, what="probes to appear")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == ExitCode.INTERRUPTED, err
    assert b"interrupted" in err and b"Traceback" not in err
    assert lab.wait(lambda: run_objects(lab) == [], timeout=10, what="cleanup") is True or run_objects(lab) == []


def test_bad_input_gets_one_line_and_its_exit_code(lab, tmp_path):
    cases = [
        (["check", "svc/nope", "-n", "shop"], ExitCode.CLUSTER, "not found"),
        (["check", "svc/api", "-n", "nowhere"], ExitCode.CLUSTER, "namespace 'nowhere' does not exist"),
        (["check", "svc:api", "-n", "shop"], ExitCode.USAGE, "error:"),
        (["check", "svc/api", "-n", "shop", "--context", f"{lab.name}-limited"], ExitCode.PROBES, "forbidden"),
    ]
    for argv, code, text in cases:
        err = StringIO()
        got = main([*argv, "--kubeconfig", lab.kubeconfig], Environment(stdout=StringIO(), stderr=err))
        assert got == code, (argv, err.getvalue())
        assert text in err.getvalue() and "Traceback" not in err.getvalue()
        assert err.getvalue().startswith("error: ")
    unreadable = tmp_path / "kubeconfig"
    unreadable.write_text("{ not yaml")
    err = StringIO()
    assert main(["check", "svc/api", "--kubeconfig", str(unreadable)], Environment(stdout=StringIO(), stderr=err)) == ExitCode.USAGE
    assert run_objects(lab) == []


def test_api_down_is_exit_3(lab, tmp_path):
    import socket

    import yaml

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    config = yaml.safe_load(open(lab.kubeconfig))
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{port}"
    dead = tmp_path / "kubeconfig"
    dead.write_text(yaml.safe_dump(config))
    err = StringIO()
    code = main(["check", "svc/api", "-n", "shop", "--kubeconfig", str(dead)], Environment(stdout=StringIO(), stderr=err))
    assert code == ExitCode.CLUSTER
    assert err.getvalue().startswith(f"error: cannot reach the API server at https://127.0.0.1:{port}")
    assert len(err.getvalue().strip().splitlines()) <= 2


def test_image_that_cannot_run_is_exit_4_and_leaves_nothing(lab):
    image = "registry.invalid/netshoot:v0.13"
    code, report, err = check_json(lab, "--image", image)
    assert code == ExitCode.PROBES, err
    assert err.startswith("error: ") and image in err and "Traceback" not in err
    # The layers that need no probe are still reported, the others say why they could not run.
    states = {layer["id"]: layer["state"] for layer in report["layers"]}
    assert states["target"] == states["endpoints"] == "pass", states
    pod = next(layer for layer in report["layers"] if layer["id"] == "pod")
    assert pod["state"] == "error" and "the probes could not run" in json.dumps(pod), pod
    assert run_objects(lab) == []
