"""Nothing outlives a run, without anyone's help (issue 11 item 8), on a lab: after `kill -9` the
run's Job expires at the probes' deadline and the cluster deletes it, its ConfigMap and the probes
within the deadline + 60 s; `cleanup` leaves a live run alone unless --force, and --dry-run deletes
nothing; a user who may not create Jobs gets the ConfigMap owner and one `note:` line. The lab API
serves Jobs as a real server does (the deadline, the TTL, batch/v1's orphaning default, RBAC)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from io import StringIO

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from netdoctor.cli import main
from netdoctor.cluster.kube import Kube
from netdoctor.environment import Environment
from netdoctor.exitcodes import ExitCode
from netdoctor.lab import lifecycle
from netdoctor.lab.state import LabConfig

from labkit import start, unique_name

pytestmark = pytest.mark.lab

MANAGED = "app.kubernetes.io/managed-by=netdoctor"
DEADLINE = 15  # seconds: the probes' and their owner Job's, through NETDOCTOR_PROBE_DEADLINE
TTL = 30  # the owner Job's ttlSecondsAfterFinished (checks/probes/owner-job.yaml)
KINDS = ("Pod", "ConfigMap", "Job")


@pytest.fixture(scope="module")
def lab():
    running = start(LabConfig(unique_name()))
    yield running
    lifecycle.down(running.name)


@pytest.fixture
def kube(lab):
    return Kube.connect(lab.kubeconfig)


def run(lab, *argv, environ=None) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    code = main([*argv, "--kubeconfig", lab.kubeconfig],
                Environment(stdout=out, stderr=err, environ={"NO_COLOR": "1", **(environ or {})}))
    return code, out.getvalue(), err.getvalue()


def objects(kube, run_id: str | None = None, namespace: str = "shop") -> dict[str, list[dict]]:
    """The run's (or every run's) objects by kind, only the kinds that have some."""
    selector = MANAGED + (f",netdoctor.io/run={run_id}" if run_id else "")
    found = {kind: kube.list_objects(kind, namespace, label_selector=selector) for kind in KINDS}
    return {kind: items for kind, items in found.items() if items}


def names(found: dict[str, list[dict]]) -> dict[str, list[str]]:
    return {kind: sorted(o["metadata"]["name"] for o in items) for kind, items in found.items()}


def failed_reason(job: dict) -> str | None:
    return next((c.get("reason") for c in (job.get("status") or {}).get("conditions") or []
                 if c["type"] == "Failed" and c["status"] == "True"), None)


def test_after_kill_9_the_cluster_removes_the_whole_run_within_its_deadline_plus_60s(lab, kube):
    proc = subprocess.Popen([sys.executable, "-m", "netdoctor", "check", "svc/api", "-n", "shop", "--kubeconfig",
                             lab.kubeconfig, "-o", "json"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "NO_COLOR": "1", "NETDOCTOR_PROBE_DEADLINE": str(DEADLINE)})
    try:
        pods = lab.wait(lambda: [p for p in lab.pods("shop", MANAGED) if p.status.phase == "Running"], timeout=30,
                        what="the probes to run")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
    run_id = pods[0].metadata.labels["netdoctor.io/run"]
    left = objects(kube, run_id)
    assert set(left) == set(KINDS), names(left)  # killed: nothing of the run was deleted by netdoctor
    job = left["Job"][0]
    created = datetime.fromisoformat(job["metadata"]["creationTimestamp"].replace("Z", "+00:00")).timestamp()
    assert job["spec"]["activeDeadlineSeconds"] == DEADLINE and job["spec"]["parallelism"] == 0
    assert all(p["spec"]["activeDeadlineSeconds"] == DEADLINE for p in left["Pod"])
    seen_failed, remaining = None, left
    while remaining and time.time() - created < DEADLINE + 60:
        time.sleep(0.5)
        remaining = objects(kube, run_id)
        seen_failed = seen_failed or next((failed_reason(j) for j in remaining.get("Job", []) if failed_reason(j)), None)
    gone_after = time.time() - created
    assert remaining == {}, f"after {gone_after:.0f}s: {names(remaining)}"
    assert seen_failed == "DeadlineExceeded"  # the job controller expired it; the TTL controller deleted it
    assert DEADLINE + TTL - 3 <= gone_after <= DEADLINE + 60, gone_after


def test_cleanup_leaves_a_live_run_alone_unless_forced_and_dry_run_deletes_nothing(lab, kube):
    code, _, err = run(lab, "check", "svc/api", "-n", "shop", "-o", "json", "--keep")
    assert code == ExitCode.OK, err
    live = names(objects(kube))
    assert set(live) == set(KINDS), live
    try:
        code, out, err = run(lab, "cleanup", "-n", "shop")
        assert code == ExitCode.OK and err == "", err
        [line] = out.splitlines()
        assert line.startswith("left live run ") and line.endswith(": --force deletes it"), out
        assert names(objects(kube)) == live

        code, out, _ = run(lab, "cleanup", "-n", "shop", "--force", "--dry-run")
        assert code == ExitCode.OK
        listed = {}
        for line in out.splitlines():
            verb, _, kind, ref = line.split(" ")
            assert verb == "would", out
            listed.setdefault(kind, []).append(ref.split("/")[1])
        assert {kind: sorted(refs) for kind, refs in listed.items()} == live
        assert names(objects(kube)) == live

        code, out, _ = run(lab, "cleanup", "-n", "shop", "--force")
        assert code == ExitCode.OK and len(out.splitlines()) == sum(map(len, live.values())), out
        assert all(line.startswith("deleted ") for line in out.splitlines()), out
        assert lab.wait(lambda: objects(kube) == {}, timeout=10, what="the run to go", show=lambda: names(objects(kube)))
    finally:
        run(lab, "cleanup", "-A", "--force")


def test_an_expired_run_is_cleaned_up_without_force(lab, kube):
    code, _, err = run(lab, "check", "svc/api", "-n", "shop", "-o", "json", "--keep", "--capture", "off",
                       environ={"NETDOCTOR_PROBE_DEADLINE": "4"})
    try:
        left = objects(kube)
        assert set(left) == set(KINDS), (code, err, names(left))
        lab.wait(lambda: failed_reason(kube.list_objects("Job", "shop", label_selector=MANAGED)[0]), timeout=10,
                 what="the owner Job to expire")
        code, out, _ = run(lab, "cleanup", "-n", "shop")
        assert code == ExitCode.OK and [line.split(" ")[1] for line in out.splitlines()] == (
            ["Pod"] * len(left["Pod"]) + ["ConfigMap", "Job"]), out
        assert lab.wait(lambda: objects(kube) == {}, timeout=10, what="the run to go", show=lambda: names(objects(kube)))
    finally:
        run(lab, "cleanup", "-A", "--force")


def test_without_rights_on_jobs_the_config_map_owns_the_probes_and_one_note_says_so(lab, kube):
    code, _, err = run(lab, "check", "svc/api", "-n", "shop", "-o", "json", "--keep", "--context", f"{lab.name}-nojobs")
    try:
        assert code == ExitCode.OK, err
        notes = [line for line in err.splitlines() if line.startswith("note:")]
        assert len(notes) == 1, err
        assert notes[0].startswith("note: cannot create the run's expiring Job in namespace shop (jobs.batch is "
                                   'forbidden: User "lab-nojobs" cannot create resource "jobs" in API group "batch" '
                                   'in the namespace "shop")'), notes
        left = objects(kube)
        assert set(left) == {"Pod", "ConfigMap"}, names(left)
        [owner] = left["ConfigMap"]
        assert "ownerReferences" not in owner["metadata"]
        assert all(p["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"] for p in left["Pod"])
    finally:
        run(lab, "cleanup", "-A", "--force")


def job_body(name: str, **spec) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"parallelism": 0, "template": {"spec": {"restartPolicy": "Never", "containers": [
                {"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}, **spec}}


def owned_config_map(name: str, job) -> dict:
    return {"metadata": {"name": name, "ownerReferences": [
        {"apiVersion": "batch/v1", "kind": "Job", "name": job.metadata.name, "uid": job.metadata.uid}]}}


def test_the_lab_api_serves_jobs_as_a_real_server_does(lab):
    core, api_client = lab.api()
    batch = client.BatchV1Api(api_client)
    job = batch.create_namespaced_job("default", job_body("expires", activeDeadlineSeconds=2, ttlSecondsAfterFinished=2))
    assert job.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": job.metadata.uid}
    core.create_namespaced_config_map("default", owned_config_map("expires-cm", job))
    done = lab.wait(lambda: failed_reason(api_client.sanitize_for_serialization(
        batch.read_namespaced_job("expires", "default"))), timeout=6, what="the deadline")
    assert done == "DeadlineExceeded"
    assert lab.wait(lambda: not batch.list_namespaced_job("default").items
                    and not core.list_namespaced_config_map("default", field_selector="metadata.name=expires-cm").items,
                    timeout=6, what="the TTL to delete the Job and the garbage collector its ConfigMap")

    kept = batch.create_namespaced_job("default", job_body("orphans"))
    core.create_namespaced_config_map("default", owned_config_map("orphan-cm", kept))
    batch.delete_namespaced_job("orphans", "default")  # batch/v1's default propagation: Orphan
    orphan = core.read_namespaced_config_map("orphan-cm", "default")
    assert not orphan.metadata.owner_references
    core.delete_namespaced_config_map("orphan-cm", "default")

    nojobs = client.BatchV1Api(config.new_client_from_config(config_file=lab.kubeconfig, context=f"{lab.name}-nojobs"))
    with pytest.raises(ApiException) as info:
        nojobs.create_namespaced_job("default", job_body("refused"))
    assert info.value.status == 403 and json.loads(info.value.body)["message"] == (
        'jobs.batch is forbidden: User "lab-nojobs" cannot create resource "jobs" in API group "batch" in the '
        'namespace "default"')
    assert nojobs.list_namespaced_job("default").items == []

