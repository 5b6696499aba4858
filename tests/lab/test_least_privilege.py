"""Least privilege and bad input on a real (lab) API server (issue 11 items 6 and 7).

The lab's `<lab>-limited` context may only read, and nothing in kube-system: `check` prints the
layers the API objects alone can judge, says what the unreadable objects cost, then the probe
error (exit 4). Every bad input is refused with one line before anything is created: the test
lists the run's objects (pods, ConfigMaps, Jobs) as the admin after each."""

from __future__ import annotations

import json
from io import StringIO

import pytest

from netdoctor.cli import main
from netdoctor.environment import Environment
from netdoctor.exitcodes import ExitCode
from netdoctor.lab import lifecycle
from netdoctor.lab.state import LabConfig

from labkit import check_json, start, unique_name

pytestmark = pytest.mark.lab

MANAGED = "app.kubernetes.io/managed-by=netdoctor"


@pytest.fixture(scope="module")
def lab():
    running = start(LabConfig(unique_name()))
    yield running
    lifecycle.down(running.name)


def created(lab) -> list[str]:
    """Every object a netdoctor run made, in any namespace, as the admin sees it."""
    v1, api_client = lab.api()
    from kubernetes import client

    found = [f"pod {p.metadata.namespace}/{p.metadata.name}" for p in v1.list_pod_for_all_namespaces(
        label_selector=MANAGED).items]
    found += [f"configmap {c.metadata.namespace}/{c.metadata.name}" for c in v1.list_config_map_for_all_namespaces(
        label_selector=MANAGED).items]
    found += [f"job {j.metadata.namespace}/{j.metadata.name}" for j in client.BatchV1Api(
        api_client).list_job_for_all_namespaces(label_selector=MANAGED).items]
    return found


def run(lab, *argv) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    code = main([*argv, "--kubeconfig", lab.kubeconfig], Environment(stdout=out, stderr=err, environ={"NO_COLOR": "1"}))
    return code, out.getvalue(), err.getvalue()


def checks(report: dict) -> dict[str, dict]:
    return {c["id"]: c for layer in report["layers"] for c in layer["checks"]}


def test_read_only_user_gets_the_api_layers_then_the_probe_error(lab):
    code, report, err = check_json(lab, "--context", f"{lab.name}-limited")
    assert code == ExitCode.PROBES, err
    found = checks(report)
    for check_id in ("ND-TGT-001", "ND-TGT-002", "ND-EP-001", "ND-EP-002", "ND-EP-003", "ND-POL-001"):
        assert found[check_id]["state"] == "pass", found[check_id]
    assert report["state"] != "pass"
    assert "the probes cannot be created" in json.dumps(found["ND-POD-001"])
    lines = err.strip().splitlines()
    assert lines[0].startswith("error: the probes cannot be created: ") and "lab-limited" in lines[0], err
    assert lines[1].startswith("hint: ") and "these layers cannot run: dns, node, pod, service" in lines[1], err
    assert "Traceback" not in err and "ERROR:root" not in err
    # kube-system is out of this user's reach: the DNS layer says what that costs, the run goes on
    notes = "\n".join(report["notes"])
    assert "cannot read pods in namespace kube-system" in notes and "ND-DNS-005" in notes, notes
    assert "cannot read the DNS pods" in found["ND-DNS-005"]["message"]
    assert created(lab) == []


def test_read_only_user_in_text_shows_the_layers_on_stdout_and_the_error_on_stderr(lab):
    code, out, err = run(lab, "check", "svc/api", "-n", "shop", "--context", f"{lab.name}-limited")
    assert code == ExitCode.PROBES
    for title in ("Target: Service and backends", "Endpoints", "NetworkPolicy"):
        assert title in out, out
    assert err.startswith("error: the probes cannot be created") and "probes cannot" not in out.splitlines()[-1]


BAD = [
    (("--port", "0"), ExitCode.USAGE, "between 1 and 65535"),
    (("--port", "70000"), ExitCode.USAGE, "between 1 and 65535"),
    (("--port", "abc"), ExitCode.USAGE, "its ports: TCP/80 (http)"),
    (("--port", "UDP/80"), ExitCode.USAGE, "its ports: TCP/80 (http)"),
    (("--port", "a-missing-name"), ExitCode.USAGE, "its ports: TCP/80 (http)"),
    (("--timeout", "inf"), ExitCode.USAGE, "0.1 to 300"),
    (("--timeout", "nan"), ExitCode.USAGE, "0.1 to 300"),
    (("--nodes", "node-9"), ExitCode.USAGE, "nodes: node-1, node-2"),
    (("--capture-namespace", "nope"), ExitCode.USAGE, "no such namespace"),
    (("--from", "deploy/nope"), ExitCode.CLUSTER, "deployment 'nope' not found"),
    (("--from", "nowhere/deploy/frontend"), ExitCode.CLUSTER, "namespace 'nowhere' does not exist"),
    (("--from", "deploy/" + "x" * 254), ExitCode.USAGE, "at most 253 characters"),
    (("-n", "n" * 64), ExitCode.USAGE, "at most 63 characters"),
]


@pytest.mark.parametrize("argv,code,text", BAD, ids=[" ".join(a)[:40] for a, _, _ in BAD])
def test_bad_input_is_refused_in_one_line_before_anything_is_created(lab, tmp_path, argv, code, text):
    got, out, err = run(lab, "check", "svc/api", "-n", "shop", *argv)
    lines = err.strip().splitlines()
    assert got == code, err
    assert lines[0].startswith("error: ") and text in lines[0] and len(lines) <= 2, err
    assert "Traceback" not in err and "ERROR:root" not in err and out == ""
    assert created(lab) == []


def test_a_pcap_path_that_is_a_file_is_refused_before_anything_is_created(lab, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    got, _, err = run(lab, "check", "svc/api", "-n", "shop", "--pcap", str(afile / "sub"))
    assert got == ExitCode.USAGE and err.startswith("error: --pcap") and len(err.strip().splitlines()) == 1, err
    assert created(lab) == []
