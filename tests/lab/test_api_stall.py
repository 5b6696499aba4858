"""An API server that hangs mid-check (the lab's, SIGSTOPped): errors are not evidence, so a blocked
overlay is never reported as working; Ctrl-C still ends netdoctor within 2 s, saying how to finish
the cleanup; a quiet watch gets its bookmark. Nothing is left behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from contextlib import contextmanager
from io import StringIO

import pytest

from netdoctor.cli import main
from netdoctor.cluster.kube import Kube, WatchEventType
from netdoctor.environment import Environment
from netdoctor.exitcodes import ExitCode
from netdoctor.lab import lifecycle
from netdoctor.lab.state import LabConfig, LabPaths

from conftest import validate_document
from labkit import MANAGED, check_process, run_objects, start, unique_name

pytestmark = pytest.mark.lab

STALL = 15.0  # seconds: longer than an exec's deadline (3 s probe + 10 s margin)
FINISH = re.compile(r"to finish it run: (netdoctor cleanup -n shop --run (\w+) --force)")


@pytest.fixture(scope="module")
def lab():
    running = start(LabConfig(unique_name()))
    yield running
    lifecycle.down(running.name)


@contextmanager
def stalled(lab):
    """The lab's API server (it lives in the lab daemon) stopped until the block ends."""
    pid = LabPaths.of(lab.name).daemon_pid()
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)



def probes_running(lab) -> bool:
    pods = lab.pods("shop", MANAGED)
    return bool(pods) and all(p.status.phase == "Running" for p in pods)


def check(lab, *extra: str) -> subprocess.Popen:
    return check_process(lab, *extra)


def test_a_stalled_api_server_never_turns_a_blocked_overlay_into_pass(lab):
    lifecycle.break_fault(lab.name, "overlay-port-blocked", None)
    try:
        proc = check(lab, "--capture", "off")
        try:
            lab.wait(lambda: probes_running(lab), timeout=30, what="the probes to run")
            time.sleep(0.3)  # the steps are under way: the cross-node ones wait on the blocked overlay
            with stalled(lab):
                time.sleep(STALL)
            out, err = proc.communicate(timeout=120)
        finally:
            proc.kill()
    finally:
        lifecycle.fix_faults(lab.name, "overlay-port-blocked")
    report = validate_document(out)  # the subprocess's report, against its published schema
    checks = {c["id"]: c for layer in report["layers"] for c in layer["checks"]}
    node = next(layer for layer in report["layers"] if layer["id"] == "node")
    assert checks["ND-NODE-002"]["state"] in ("fail", "error"), (checks["ND-NODE-002"], err)
    assert node["state"] != "pass" and report["diagnosis"]["state"] != "pass"
    assert proc.returncode in (ExitCode.CHECK_FAILED, ExitCode.PROBES), err
    assert lab.wait(lambda: run_objects(lab) == [], timeout=20, what="the probes to go", show=lambda: run_objects(lab))


def test_ctrl_c_while_the_api_server_hangs_ends_within_2s_and_says_how_to_finish(lab):
    proc = check(lab)
    try:
        lab.wait(lambda: probes_running(lab), timeout=30, what="the probes to run")
        with stalled(lab):
            time.sleep(1.0)  # calls in flight now hang
            proc.send_signal(signal.SIGINT)
            sent = time.monotonic()
            _, err = proc.communicate(timeout=10)
            took = time.monotonic() - sent
    finally:
        proc.kill()
    text = err.decode()
    assert proc.returncode == ExitCode.INTERRUPTED, text
    assert took < 2.3, (took, text)
    assert "error: interrupted" in text and "Traceback" not in text
    finish = FINISH.search(text)
    assert finish and "hint: cleanup did not finish" in text, text
    assert re.search(rf"left: .*Pod shop/netdoctor-{finish[2]}-", text), text
    code = main([*finish[1].split()[1:], "--kubeconfig", lab.kubeconfig], Environment(stdout=StringIO(), stderr=StringIO()))
    assert code == ExitCode.OK
    assert lab.wait(lambda: run_objects(lab) == [], timeout=20, what="the probes to go", show=lambda: run_objects(lab))


def test_a_quiet_watch_gets_a_bookmark_before_it_ends(lab):
    kube = Kube.connect(lab.kubeconfig, request_timeout=8)  # the watch asks for 4 s
    listed = kube.snapshot("Pod", "shop", "app=nothing-has-this")
    started = time.monotonic()
    events = list(kube.watch("Pod", "shop", "app=nothing-has-this", listed.resource_version))
    assert 3.5 < time.monotonic() - started < 5.5
    assert [e.type for e in events] == [WatchEventType.BOOKMARK]
    assert int(events[0].resource_version) >= int(listed.resource_version)
    assert events[0].object["kind"] == "Pod" and set(events[0].object["metadata"]) == {"resourceVersion"}
