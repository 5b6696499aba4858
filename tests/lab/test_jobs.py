"""The lab's batch/v1 Jobs on its object store, without the HTTP layer or a lab: the server's
defaults, generated selector and validation; the job controller's startTime, suspend and
activeDeadlineSeconds (FailureTarget + Failed, DeadlineExceeded) and its release of pods it does
not select; the TTL-after-finished controller deleting a finished Job with its dependents."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from netdoctor.lab.api.status import ApiError
from netdoctor.lab.api.store import Store
from netdoctor.lab.jobs import reconcile_jobs

T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
MERGE = "application/merge-patch+json"


@pytest.fixture
def store():
    s = Store(seed=1)
    s.create("namespaces", {"metadata": {"name": "demo"}})
    return s


def job(name="owner", **spec):
    return {"metadata": {"name": name, "labels": {"app": "x"}},
            "spec": {"parallelism": 0, "template": {"spec": {"restartPolicy": "Never",
                                                             "containers": [{"name": "c", "image": "pause"}]}},
                     **spec}}


def owned(kind, api_version, owner, **extra):
    return {"metadata": {"ownerReferences": [{"apiVersion": api_version, "kind": kind, "name": owner["metadata"]["name"],
                                              "uid": owner["metadata"]["uid"], "controller": True}], **extra}}


def pod(name, owner=None, labels=None):
    meta = owned("ConfigMap", "v1", owner)["metadata"] if owner else {}
    return {"metadata": {"name": name, "labels": labels or {"app": name}, **meta},
            "spec": {"containers": [{"name": "c", "image": "busybox"}], "terminationGracePeriodSeconds": 0}}


def get(store, name="owner"):
    return store.get("jobs", "demo", name)


def test_a_job_gets_the_servers_defaults_and_a_selector_from_its_uid(store):
    created = store.create("jobs", job(activeDeadlineSeconds=30, ttlSecondsAfterFinished=5), "demo")
    uid, spec = created["metadata"]["uid"], created["spec"]
    assert (created["apiVersion"], created["kind"], created["status"]) == ("batch/v1", "Job", {})
    assert spec["parallelism"] == 0 and "completions" not in spec  # only both unset default to 1
    assert (spec["backoffLimit"], spec["completionMode"], spec["suspend"]) == (6, "NonIndexed", False)
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert spec["template"]["metadata"]["labels"] == {
        "job-name": "owner", "batch.kubernetes.io/job-name": "owner", "controller-uid": uid,
        "batch.kubernetes.io/controller-uid": uid}
    plain = store.create("jobs", {"metadata": {"name": "plain"}, "spec": {"template": job()["spec"]["template"]}}, "demo")
    assert (plain["spec"]["parallelism"], plain["spec"]["completions"]) == (1, 1)
    assert plain["metadata"]["labels"]["batch.kubernetes.io/job-name"] == "plain"  # from the template


def test_a_job_is_validated_as_the_real_server_does(store):
    bad = job(activeDeadlineSeconds=-1)
    bad["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    with pytest.raises(ApiError) as info:
        store.create("jobs", bad, "demo")
    assert info.value.code == 422
    assert info.value.message.startswith('Job.batch "owner" is invalid: [')
    assert 'spec.activeDeadlineSeconds: Invalid value: -1: must be greater than or equal to 0' in info.value.message
    assert ('spec.template.spec.restartPolicy: Unsupported value: "Always": supported values: "OnFailure", "Never"'
            in info.value.message)


def test_the_deadline_fails_the_job_and_its_ttl_deletes_it_with_its_dependents(store):
    created = store.create("jobs", job(activeDeadlineSeconds=10, ttlSecondsAfterFinished=30), "demo")
    config_map = store.create("configmaps", {**owned("Job", "batch/v1", created, name="cm"), "data": {}}, "demo")
    store.create("pods", pod("probe", config_map), "demo")
    reconcile_jobs(store, T0)
    status = get(store)["status"]
    assert status == {"startTime": "2030-01-01T12:00:00Z", "ready": 0, "terminating": 0, "uncountedTerminatedPods": {}}
    reconcile_jobs(store, T0 + timedelta(seconds=9))
    assert "conditions" not in get(store)["status"]
    reconcile_jobs(store, T0 + timedelta(seconds=10))
    conditions = get(store)["status"]["conditions"]
    assert [(c["type"], c["status"], c["reason"], c["message"]) for c in conditions] == [
        ("FailureTarget", "True", "DeadlineExceeded", "Job was active longer than specified deadline"),
        ("Failed", "True", "DeadlineExceeded", "Job was active longer than specified deadline")]
    assert {c["lastTransitionTime"] for c in conditions} == {"2030-01-01T12:00:10Z"}
    reconcile_jobs(store, T0 + timedelta(seconds=39))
    assert get(store)["metadata"]["name"] == "owner"  # finished, kept for its TTL
    reconcile_jobs(store, T0 + timedelta(seconds=40))
    assert store.list("jobs", "demo") == [] and store.list("configmaps", "demo") == [] and store.list("pods", "demo") == []


def test_a_suspended_jobs_deadline_does_not_run_until_it_is_resumed(store):
    store.create("jobs", job(activeDeadlineSeconds=5, suspend=True), "demo")
    reconcile_jobs(store, T0)
    reconcile_jobs(store, T0 + timedelta(seconds=60))
    status = get(store)["status"]
    assert "startTime" not in status
    assert [(c["type"], c["status"], c["reason"]) for c in status["conditions"]] == [("Suspended", "True", "JobSuspended")]
    store.patch("jobs", "demo", "owner", {"spec": {"suspend": False}}, MERGE)
    reconcile_jobs(store, T0 + timedelta(seconds=100))
    status = get(store)["status"]
    assert status["startTime"] == "2030-01-01T12:01:40Z"
    assert [(c["type"], c["status"], c["reason"]) for c in status["conditions"]] == [("Suspended", "False", "JobResumed")]
    reconcile_jobs(store, T0 + timedelta(seconds=104))
    assert len(get(store)["status"]["conditions"]) == 1
    reconcile_jobs(store, T0 + timedelta(seconds=105))
    assert get(store)["status"]["conditions"][-1]["type"] == "Failed"


def test_the_job_controller_releases_pods_it_controls_but_does_not_select(store):
    created = store.create("jobs", job(activeDeadlineSeconds=100), "demo")
    uid = created["metadata"]["uid"]
    stray = pod("stray")
    stray["metadata"].update(owned("Job", "batch/v1", created)["metadata"])
    store.create("pods", stray, "demo")
    own = pod("own", labels={"batch.kubernetes.io/controller-uid": uid})
    own["metadata"].update(owned("Job", "batch/v1", created)["metadata"])
    store.create("pods", own, "demo")
    reconcile_jobs(store, T0)
    assert "ownerReferences" not in store.get("pods", "demo", "stray")["metadata"]
    assert store.get("pods", "demo", "own")["metadata"]["ownerReferences"][0]["uid"] == uid
