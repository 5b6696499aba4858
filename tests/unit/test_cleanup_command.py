"""`netdoctor cleanup` in-process against the fleet tests' fake cluster: live runs are left alone
unless --force, --dry-run deletes nothing; and the hidden probe-deadline knob of `check`."""

from __future__ import annotations

from io import StringIO

import pytest

from netdoctor.cli import main
from netdoctor.environment import Environment

from test_check_command import FakeKube as CheckKube
from test_probe_fleet import FakeKube, launched

PAST = "2020-01-01T12:00:00Z"  # long expired


def run(kube, *argv, environ=None):
    env = Environment(stdout=StringIO(), stderr=StringIO(), environ={"NO_COLOR": "1", **(environ or {})},
                      connect=lambda kubeconfig, context: kube)
    code = main(list(argv), env=env)
    return code, env.stdout.getvalue(), env.stderr.getvalue()


def cluster_with_runs() -> FakeKube:
    """Run abc123 expired long ago; run live22 is live (its objects are created in 2030)."""
    kube = FakeKube()
    kube.namespace = "demo"
    launched(kube)
    for obj in kube.objects.values():
        obj["metadata"]["creationTimestamp"] = PAST
    launched(kube, "live22")
    return kube


def test_cleanup_deletes_expired_runs_and_names_the_live_ones_it_leaves():
    kube = cluster_with_runs()
    code, out, err = run(kube, "cleanup")
    assert code == 0 and err == ""
    assert out.splitlines() == [
        "deleted Pod demo/netdoctor-abc123-client",
        "deleted ConfigMap demo/netdoctor-run-abc123",
        "deleted Job demo/netdoctor-run-abc123",
        "left live run live22 in demo (3 objects, live until 2030-01-01T12:02:30Z): --force deletes it",
    ]
    assert {name for _, _, name in kube.objects} == {"netdoctor-live22-client", "netdoctor-run-live22"}


def test_force_deletes_live_runs_too():
    kube = cluster_with_runs()
    code, out, _ = run(kube, "cleanup", "-n", "demo", "--run", "live22", "--force")
    assert code == 0 and out.splitlines() == [
        "deleted Pod demo/netdoctor-live22-client", "deleted ConfigMap demo/netdoctor-run-live22",
        "deleted Job demo/netdoctor-run-live22"]
    assert {name for _, _, name in kube.objects} == {"netdoctor-abc123-client", "netdoctor-run-abc123"}


def test_dry_run_lists_and_touches_nothing():
    kube = cluster_with_runs()
    code, out, _ = run(kube, "cleanup", "-A", "--dry-run", "--force")
    assert code == 0 and [line.split(" ", 3)[:3] for line in out.splitlines()] == [
        ["would", "delete", "Pod"]] * 2 + [["would", "delete", "ConfigMap"]] * 2 + [["would", "delete", "Job"]] * 2
    assert kube.deleted == [] and len(kube.objects) == 6


def test_nothing_to_clean_up_and_unlistable_jobs_are_a_note():
    kube = FakeKube()
    kube.namespace = "demo"
    kube.forbid_job_list = True
    code, out, err = run(kube, "cleanup")
    assert (code, out) == (0, "nothing to clean up\n")
    assert err.startswith("note: cannot list jobs.batch: jobs.batch is forbidden") and err.count("\n") == 1


@pytest.mark.parametrize("value", ["abc", "0", "-5", "1.5"])
def test_a_bad_probe_deadline_is_a_usage_error_before_anything_is_created(value):
    code, _, err = run(CheckKube(), "check", "svc/web", "-n", "demo", environ={"NETDOCTOR_PROBE_DEADLINE": value})
    assert code == 2 and err.startswith(f"error: NETDOCTOR_PROBE_DEADLINE='{value}': use a whole number of seconds")
