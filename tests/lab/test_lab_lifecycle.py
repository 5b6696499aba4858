"""`lab up` / `lab down` build a working cluster and leave nothing behind, whatever happened."""

import os
import signal
import time
from io import StringIO

import pytest

from netdoctor.cli import main
from netdoctor.environment import Environment
from netdoctor.exitcodes import ExitCode
from netdoctor.lab import lifecycle
from netdoctor.lab.state import LabConfig, LabPaths

from labkit import lab_leftovers, start, unique_name

pytestmark = pytest.mark.lab


def run_cli(*argv):
    out, err = StringIO(), StringIO()
    code = main(list(argv), Environment(stdout=out, stderr=err, environ={"NO_COLOR": "1"}))
    return code, out.getvalue(), err.getvalue()


def test_up_then_down_leaves_nothing(tmp_path):
    name = unique_name()
    code, out, err = run_cli("lab", "up", "--name", name)
    assert code == 0, err
    assert f"{LabPaths.of(name).kubeconfig}" in out.replace("\n", "")
    assert lab_leftovers(name), "an up lab should have namespaces and processes"
    code, out, err = run_cli("lab", "down", "--name", name)
    assert code == 0, err
    assert lab_leftovers(name) == []


def test_down_after_the_daemon_was_killed(tmp_path):
    lab = start(LabConfig(unique_name()))
    pid = LabPaths.of(lab.name).daemon_pid()
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.1)
    lifecycle.down(lab.name)
    assert lab_leftovers(lab.name) == []


def test_failed_up_leaves_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: Bad_Name, namespace: default}\nspec: {containers: []}\n")
    name = unique_name()
    code, _, err = run_cli("lab", "up", "--name", name, "--scenario", str(bad))
    assert code == ExitCode.ENVIRONMENT
    assert "could not be built" in err and "Bad_Name" in err
    assert lab_leftovers(name) == []


def test_bad_input_is_one_line_with_exit_code():
    code, _, err = run_cli("lab", "up", "--name", "Bad Name")
    assert code == ExitCode.USAGE and err.startswith("error: lab name")
    code, _, err = run_cli("lab", "break", "no-such-fault", "--name", "nolab")
    assert code == ExitCode.USAGE and "no lab named nolab" in err


def test_two_labs_run_side_by_side():
    first, second = start(LabConfig(unique_name())), start(LabConfig(unique_name(), overlay="routed"))
    try:
        for lab in (first, second):
            names = {p.metadata.name.split("-")[0] for p in lab.pods("shop")}
            assert names == {"api", "db", "frontend"}
    finally:
        lifecycle.down(first.name)
        lifecycle.down(second.name)
    assert lab_leftovers(first.name) == [] and lab_leftovers(second.name) == []


def test_pod_bridge_keeps_its_mac_when_pods_come_and_go():
    """Real CNI bridges pin their MAC; otherwise new pods silently break their neighbours' gateway."""
    import subprocess

    from kubernetes import client

    lab = start(LabConfig(unique_name()))
    try:
        node = f"nd-{lab.name}-node-1"

        def bridge_mac():
            return subprocess.run(["ip", "-n", node, "-br", "link", "show", "cni0"], capture_output=True,
                                  text=True).stdout.split()[2]

        before = bridge_mac()
        v1, _ = lab.api()
        for i in range(4):
            v1.create_namespaced_pod("default", client.V1Pod(metadata=client.V1ObjectMeta(name=f"p{i}"),
                                     spec=client.V1PodSpec(node_name="node-1",
                                                           containers=[client.V1Container(name="c", image="x")])))
        lab.wait(lambda: len([p for p in lab.pods("default") if p.status.phase == "Running"]) == 4, what="pods")
        assert bridge_mac() == before
    finally:
        lifecycle.down(lab.name)


def test_a_fault_target_that_is_not_in_the_lab_is_a_usage_error():
    lab = start(LabConfig(unique_name()))
    try:
        code, _, err = run_cli("lab", "break", "dns-stale-record", "--target", "shop/nope", "--name", lab.name)
        assert code == ExitCode.USAGE and err == 'error: dns-stale-record: services "nope" not found\n'
        code, _, err = run_cli("lab", "break", "overlay-mtu", "--target", "node-9", "--name", lab.name)
        assert code == ExitCode.USAGE and "node-9" in err
        assert lifecycle.statuses(lab.name)[0].faults == ()  # nothing was left half-broken
    finally:
        lifecycle.down(lab.name)
