"""`netdoctor check` options end to end on a lab: --keep (probes stay, can be exec'd, `cleanup
--force` removes them), --from pod/… and deploy/… (the source's labels face the NetworkPolicies: frontend
is let into api, db is not), a --from that does not exist, and live progress on a terminal only."""

from __future__ import annotations

import json
import re
from io import StringIO

import pytest

from netdoctor.cli import main
from netdoctor.environment import Environment
from netdoctor.exitcodes import ExitCode
from netdoctor.cluster.kube import Kube
from netdoctor.lab import lifecycle
from netdoctor.lab.state import LabConfig

from labkit import start, unique_name

pytestmark = pytest.mark.lab

MANAGED = "app.kubernetes.io/managed-by=netdoctor"
KEPT = re.compile(r"^kept probe: kubectl -n (\S+) exec -it (\S+) -- bash$")


class Terminal(StringIO):
    """A stream that says it is a terminal, as stderr is for someone at a shell."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def lab():
    running = start(LabConfig(unique_name()))
    yield running
    lifecycle.down(running.name)


def run(lab, *argv, stdout=None, stderr=None, environ=None) -> tuple[int, str, str]:
    out, err = stdout or StringIO(), stderr or StringIO()
    code = main([*argv, "--kubeconfig", lab.kubeconfig],
                Environment(stdout=out, stderr=err, environ={"NO_COLOR": "1"} if environ is None else environ))
    return code, out.getvalue(), err.getvalue()


def check(lab, *extra, **streams) -> tuple[int, dict, str]:
    code, out, err = run(lab, "check", "svc/api", "-n", "shop", "-o", "json", *extra, **streams)
    return code, (json.loads(out) if out.strip() else {}), err


def managed_pods(lab) -> dict[tuple[str, str], str]:
    """(namespace, name) -> phase of every netdoctor probe pod in the lab."""
    v1, _ = lab.api()
    return {(p.metadata.namespace, p.metadata.name): p.status.phase
            for p in v1.list_pod_for_all_namespaces(label_selector=MANAGED).items}


def layer(report: dict, layer_id: str) -> dict:
    return next(entry for entry in report["layers"] if entry["id"] == layer_id)


def failing(report: dict) -> list:
    """The evidence and logs of every check that did not pass, for a failure message."""
    return [(c["id"], c["message"], c["evidence"], c["log"]) for entry in report.get("layers", [])
            for c in entry["checks"] if c["state"] not in ("pass", "skip")]


def one_pod(lab, selector: str) -> str:
    pods = [p for p in lab.pods("shop", selector) if p.status.phase == "Running"]
    assert pods, f"no Running pod with {selector}"
    return pods[0].metadata.name


def test_keep_leaves_running_probes_that_cleanup_removes(lab):
    try:
        code, report, err = check(lab, "--keep")
        assert code == ExitCode.OK, (err, report.get("diagnosis"))
        kept = {KEPT.match(line).groups() for line in err.splitlines() if line.startswith("kept probe:")}
        assert all(KEPT.match(line) for line in err.splitlines() if line.startswith("kept probe:")), err
        running = managed_pods(lab)
        assert kept, err
        assert kept == set(running), (err, running)  # the lines name exactly the probes left behind
        assert set(running.values()) == {"Running"}, running
        kube = Kube.connect(lab.kubeconfig)
        source = next(name for _, name in sorted(kept) if name.endswith("-source"))
        result = kube.exec("shop", source, ["sh", "-c", "exit 7"], timeout=10)
        assert (result.exit_code, result.error) == (7, None), result  # the command ran in the pod
        assert kube.exec("shop", source, ["true"], timeout=10).ok

        code, out, err = run(lab, "cleanup", "-n", "shop", "--force")  # kept probes are live until their deadline
        assert code == ExitCode.OK, err
        deleted = {tuple(line.split(" ", 2)[2].split("/")) for line in out.splitlines() if line.startswith("deleted Pod ")}
        assert deleted == kept, out
        assert any(line.startswith("deleted ConfigMap shop/netdoctor-run-") for line in out.splitlines()), out
        assert lab.wait(lambda: managed_pods(lab) == {}, timeout=10, what="probes to go", show=lambda: managed_pods(lab))
        code, out, _ = run(lab, "cleanup", "-n", "shop")
        assert (code, out) == (ExitCode.OK, "nothing to clean up\n")
    finally:
        run(lab, "cleanup", "-A")


def test_from_frontend_pod_is_let_in_by_the_policies(lab):
    frontend = one_pod(lab, "app=frontend")
    code, report, err = check(lab, "--from", f"pod/{frontend}")
    assert code == ExitCode.OK, (err, report.get("diagnosis"))
    assert report["source"].startswith(f"pod/{frontend} on node-"), report["source"]
    assert any(f"impersonate pod/{frontend} " in note and "app=frontend" in note for note in report["notes"]), report["notes"]
    policy = layer(report, "policy")
    assert policy["state"] == "pass", policy
    assert {c["id"]: c["state"] for c in policy["checks"]}["ND-POL-001"] == "pass", policy


def test_from_db_deployment_is_denied_by_the_api_policy(lab):
    db = one_pod(lab, "app=db")
    code, report, err = check(lab, "--from", "deploy/db")
    assert code == ExitCode.CHECK_FAILED, err
    assert report["source"].startswith(f"pod/{db} on node-"), report["source"]  # the Deployment's running pod
    diagnosis = report["diagnosis"]
    assert (diagnosis["check_id"], diagnosis["cause"]) == ("ND-POL-001", "ingress-denied"), diagnosis
    assert layer(report, "policy")["state"] == "fail"
    assert layer(report, "dns")["state"] == "pass", failing(report)  # db may resolve names: only api's ingress is shut
    assert managed_pods(lab) == {}  # a failed check leaves nothing


@pytest.mark.parametrize("source", ["pod/nope", "deploy/nope"])
def test_from_a_missing_object_is_one_line(lab, source):
    code, out, err = run(lab, "check", "svc/api", "-n", "shop", "--from", source)
    assert code == ExitCode.CLUSTER, err  # README: the target/namespace (or source) does not exist
    lines = err.splitlines()
    assert lines[0].startswith("error: ") and "'nope' not found in namespace 'shop'" in lines[0], err
    assert all(line.startswith("hint: ") for line in lines[1:]), err
    assert "Traceback" not in err and out == ""


def test_progress_shows_on_a_terminal_and_the_report_on_stdout(lab):
    err = Terminal()
    code, report, text = check(lab, stderr=err, environ={"TERM": "xterm-256color"})
    assert code == ExitCode.OK, text
    assert report["schema"] == "netdoctor.check/v1" and report["state"] == "pass"  # stdout is the report alone
    assert "probing…" in text, text[:500]
    assert re.search(r"probing… \d+/\d+ ", text), text[:500]  # steps counted as they finish
    assert "\x1b[" in text  # drawn and erased in place
    assert '"schema"' not in text


def test_no_progress_codes_off_a_terminal(lab):
    code, out, err = run(lab, "check", "svc/api", "-n", "shop", environ={})
    assert code == ExitCode.OK, err
    assert "\x1b" not in err and "probing" not in err, repr(err[:500])  # no live display off a terminal
    assert re.search(r"^progress: dns: \d+ steps done in [\d.]+ s$", err, re.M), err  # a line per layer
    assert "\x1b" not in out
    assert "PASS" in out and "svc/api" in out


def test_each_probe_runs_its_steps_over_one_exec(lab, monkeypatch):
    opened: list[tuple[str, str]] = []  # (pod, what the exec runs)
    stream = Kube.exec_stream

    def counted(self, namespace, pod, command, container=None, **kwargs):
        opened.append((pod, "channel" if "netdoctor-channel" in command else "capture" if "netdoctor-capture" in command
                       else command[0]))
        return stream(self, namespace, pod, command, container, **kwargs)

    monkeypatch.setattr(Kube, "exec_stream", counted)
    code, report, err = check(lab)
    assert code == ExitCode.OK, (err, failing(report))
    probes = {pod for pod, _ in opened if pod.startswith("netdoctor-")}
    traffic = {pod for pod, what in opened if what == "channel"}
    assert traffic and all(opened.count((pod, "channel")) == 1 for pod in traffic)
    # Into the probes: one channel each and the captures; the steps' commands, ~20, went through the channels.
    assert {what for pod, what in opened if pod in probes} == {"channel", "capture"}, opened
    assert len(report["layers"]) > 5 and not lab_processes(lab, "netdoctor-channel", wait=5.0)


def lab_processes(lab, marker: str, wait: float) -> list[str]:
    """The lab's processes (working in its pods' directories) whose command line holds `marker`,
    once `wait` seconds have let them end."""
    import time
    from pathlib import Path

    from netdoctor.lab.state import LabPaths

    root = str(LabPaths.of(lab.name).root)
    deadline = time.monotonic() + wait
    while True:
        found = []
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if marker.encode() in (proc / "cmdline").read_bytes() and str((proc / "cwd").resolve()).startswith(root):
                    found.append(proc.name)
            except OSError:  # gone meanwhile
                continue
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)
