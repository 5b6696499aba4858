"""ProbeFleet against a fake of our own Kube wrapper: manifests (the probes, their owner ConfigMap and
its expiring Job), watching the pods start, failures, cleanup (also the bounded one after Ctrl-C),
and what `cleanup_leftovers` deletes: expired runs, live ones only when forced."""

import os
import signal
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from netdoctor.errors import ClusterError, Interrupted, ProbeError
from netdoctor.cluster.kube import Expired, Forbidden, NotFound, Snapshot, Stalled, WatchEvent, WatchEventType
from netdoctor.cluster.objects import Pod
from netdoctor.observations import ExecResult, ListenerStatus, TcpOutcome
from netdoctor.probe.fleet import (
    Capability,
    FallbackReason,
    LaunchFailure,
    OwnerFallback,
    ProbeFleet,
    ProbeLaunchError,
    ProbeRole,
    INTERRUPT_BUDGET,
    ProbeSpec,
    RunState,
    cleanup_leftovers,
    listeners_of,
)

CREATED = "2030-01-01T12:00:00Z"  # every fake object's creationTimestamp
T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
JOBS_FORBIDDEN = ('jobs.batch is forbidden: User "dev" cannot create resource "jobs" in API group "batch" in the '
                  'namespace "demo"')
PSA = 'pods "x" is forbidden: violates PodSecurity "baseline:latest": non-default capabilities (container "probe" must not include "NET_ADMIN", "NET_RAW" in securityContext.capabilities.add)'


class FakeKube:
    """Stores what was created and the pods' changes as a watch would tell them; pods are Running
    from the start unless a test says otherwise (`status_for`, or later `set_status`)."""

    def __init__(self):
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.deleted: list[tuple[str, str, str]] = []
        self.status_for: dict[str, dict] = {}  # pod name -> status to report
        self.fail_pod_create: Exception | None = None
        self.pod_create_seconds = 0.0  # how long each pod creation takes to answer
        self.fail_delete: set[str] = set()
        self.stall_deletes = False  # every delete waits out its timeout, as on a hung API server
        self.delete_seconds = 0.0  # how long each delete takes to answer
        self.deleting: list[tuple[str, float]] = []  # (kind, when) of each delete call
        self.execs: list[list[str]] = []
        self.channels_refused = 0
        self.exec_result = ExecResult(0, b"", b"")
        self.version = 0
        self.changes: list[tuple[int, WatchEventType, dict]] = []  # pod events, by resourceVersion
        self.changed = threading.Condition()
        self.snapshots: list[str] = []  # the resourceVersion of each list
        self.watched: list[str] = []  # the resourceVersion each watch started from
        self.expire: set[str] = set()  # watches from these versions get 410 Expired
        self.fail_job_create: Exception | None = None
        self.suspend_jobs = False  # as a queueing webhook (Kueue) does to the Jobs it admits
        self.forbid_job_list = False
        self.created: list[tuple[str, str, str]] = []  # in order

    def create_job(self, namespace, body):
        if self.fail_job_create:
            raise self.fail_job_create
        spec = dict(body["spec"], suspend=self.suspend_jobs)
        return self._store("Job", namespace, dict(body, spec=spec, metadata=dict(body["metadata"], uid="uid-job")))

    def create_config_map(self, namespace, body):
        return self._store("ConfigMap", namespace, dict(body, metadata=dict(body["metadata"], uid="uid-cm")))

    def _store(self, kind, namespace, obj):
        obj["metadata"]["creationTimestamp"] = CREATED
        self.objects[(kind, namespace, obj["metadata"]["name"])] = obj
        self.created.append((kind, namespace, obj["metadata"]["name"]))
        self._record(None)
        return obj

    def create_pod(self, namespace, body):
        time.sleep(self.pod_create_seconds)
        if self.fail_pod_create:
            raise self.fail_pod_create
        body["metadata"]["creationTimestamp"] = CREATED
        self.objects[("Pod", namespace, body["metadata"]["name"])] = body
        self.created.append(("Pod", namespace, body["metadata"]["name"]))
        self._record(WatchEventType.ADDED, body)
        return Pod.from_api(body)

    def set_status(self, namespace, name, status):
        self.status_for[name] = status
        self._record(WatchEventType.MODIFIED, self.objects[("Pod", namespace, name)])

    def remove_pod(self, namespace, name):
        self._record(WatchEventType.DELETED, self.objects.pop(("Pod", namespace, name)))

    def _record(self, event, body=None):
        with self.changed:
            self.version += 1
            if event:
                self.changes.append((self.version, event, self._shown(body)))
            self.changed.notify_all()

    def _shown(self, body):
        name = body["metadata"]["name"]
        return dict(body, metadata=dict(body["metadata"], resourceVersion=str(self.version)),
                    status=self.status_for.get(name, RUNNING))

    def snapshot(self, kind, namespace, label_selector=None):
        assert kind == "Pod"
        with self.changed:
            items = tuple(self._shown(body) for (k, ns, _), body in self.objects.items()
                          if k == kind and ns == namespace and _selects(label_selector, body))
            self.snapshots.append(str(self.version))
            return Snapshot(items, str(self.version))

    def watch(self, kind, namespace, label_selector, resource_version):
        self.watched.append(resource_version)
        if resource_version in self.expire:
            raise Expired("too old resource version", status=410, reason="Expired")
        return self._events(namespace, label_selector, int(resource_version))

    def _events(self, namespace, label_selector, cursor):
        """What changed after `cursor`; like the server, a quiet watch ends (here after 50 ms)."""
        with self.changed:
            self.changed.wait_for(lambda: self.version > cursor, timeout=0.05)
            batch = [(v, e, b) for v, e, b in self.changes if v > cursor]
            reached = self.version
        for _, event, body in batch:
            if body["metadata"]["namespace"] == namespace and _selects(label_selector, body):
                yield WatchEvent(event, body)
        yield WatchEvent(WatchEventType.BOOKMARK, {"metadata": {"resourceVersion": str(reached)}})

    def pods(self, namespace, label_selector=None, field_selector=None):
        raise AssertionError("probe pods are watched, not polled")

    def delete(self, kind, namespace, name, *, timeout=None):
        self.deleting.append((kind, time.monotonic()))
        time.sleep(self.delete_seconds)
        if self.stall_deletes:
            time.sleep(timeout)
            raise Stalled(f"the API server did not answer within {timeout:g}s")
        if name in self.fail_delete:
            raise ClusterError(f"cannot delete {name}: connection refused")
        self.deleted.append((kind, namespace, name))
        return self.objects.pop((kind, namespace, name), None) is not None

    def list_objects(self, kind, namespace=None, label_selector=None, field_selector=None):
        if kind == "Job" and self.forbid_job_list:
            message = 'jobs.batch is forbidden: User "dev" cannot list resource "jobs" in API group "batch"'
            raise Forbidden(message, status=403, reason="Forbidden", server_message=message)
        return [o for (k, ns, _), o in self.objects.items()
                if k == kind and namespace in (None, ns) and _selects(label_selector, o)]

    def exec(self, namespace, pod, command, container=None, *, timeout):
        self.execs.append(command)
        return self.exec_result

    def exec_stream(self, namespace, pod, command, container=None, *, stdin=False):
        """No command channel here (tests/unit/test_probe_channel.py runs real ones): a probe
        falls back to an exec per command, which `execs` records."""
        self.channels_refused += 1
        raise ProbeError("this fake cluster streams no exec")


def _selects(selector, body):
    """`k=v` and `k` (exists) terms, as the label selectors netdoctor sends."""
    labels = body["metadata"].get("labels") or {}
    terms = [term.partition("=") for term in (selector or "").split(",") if term]
    return all(key in labels and (not eq or labels[key] == value) for key, eq, value in terms)


RUNNING = {"phase": "Running", "podIP": "10.244.0.9", "containerStatuses": [{"name": "probe", "ready": True, "state": {"running": {}}}]}


def waiting(reason, message=""):
    return {"phase": "Pending", "containerStatuses": [{"name": "probe", "ready": False, "state": {"waiting": {"reason": reason, "message": message}}}]}


def fleet(kube, **kw):
    return ProbeFleet(kube, run_timeout=30, run_id="abc123", **kw)


@pytest.fixture(autouse=True)
def ctrl_c_raises():
    """SIGINT raises KeyboardInterrupt, however pytest was started (a shell's background job
    inherits SIGINT ignored, and Python then leaves it so)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def interrupt_after(*seconds):
    """Ctrl-C (SIGINT to this process, so the main thread gets KeyboardInterrupt) after each delay."""
    timers = [threading.Timer(s, os.kill, (os.getpid(), signal.SIGINT)) for s in seconds]
    for timer in timers:
        timer.start()
    return timers


def pod_body(kube, name="netdoctor-abc123-client"):
    return kube.objects[("Pod", "demo", name)]


def test_probe_manifest_is_safe():
    kube = FakeKube()
    with fleet(kube) as f:
        probes = f.launch([ProbeSpec("client", "demo", node_name="node-a")])
        body = pod_body(kube)
        spec, container = body["spec"], body["spec"]["containers"][0]
        owner = body["metadata"]["ownerReferences"][0]
        assert owner == {"apiVersion": "v1", "kind": "ConfigMap", "name": "netdoctor-run-abc123", "uid": "uid-cm",
                         "controller": True, "blockOwnerDeletion": True}
        assert spec["automountServiceAccountToken"] is False and spec["enableServiceLinks"] is False
        assert spec["activeDeadlineSeconds"] == 150 and container["args"] == ["150"]
        assert spec["nodeName"] == "node-a" and spec["tolerations"] == [{"operator": "Exists"}]
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert container["securityContext"]["runAsNonRoot"] is True
        assert container["image"] == "nicolaka/netshoot:v0.13"
        assert body["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "netdoctor"
        assert body["metadata"]["labels"]["netdoctor.io/run"] == "abc123"
        assert "readinessProbe" not in container
        assert probes[0].pod.ip == "10.244.0.9"
    assert kube.objects == {}
    assert ("ConfigMap", "demo", "netdoctor-run-abc123") in kube.deleted


def test_the_owner_config_map_is_owned_by_a_job_that_expires_at_the_probes_deadline():
    kube = FakeKube()
    with fleet(kube, keep=True) as f:
        f.launch([ProbeSpec("client", "demo"), ProbeSpec("other", "demo")])
    # the owners first, in this order; then the probes, created at once (in any order)
    assert kube.created[:2] == [("Job", "demo", "netdoctor-run-abc123"), ("ConfigMap", "demo", "netdoctor-run-abc123")]
    assert sorted(kube.created[2:]) == [("Pod", "demo", "netdoctor-abc123-client"), ("Pod", "demo", "netdoctor-abc123-other")]
    job = kube.objects[("Job", "demo", "netdoctor-run-abc123")]
    spec = job["spec"]
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    assert job["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "netdoctor", "netdoctor.io/run": "abc123"}
    assert spec["parallelism"] == 0 and spec["activeDeadlineSeconds"] == 150 and spec["ttlSecondsAfterFinished"] == 30
    assert "selector" not in spec and "manualSelector" not in spec  # the server generates its own selector
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    assert spec["template"]["spec"]["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    owner = kube.objects[("ConfigMap", "demo", "netdoctor-run-abc123")]["metadata"]
    assert owner["ownerReferences"] == [{"apiVersion": "batch/v1", "kind": "Job", "name": "netdoctor-run-abc123",
                                         "uid": "uid-job", "controller": True, "blockOwnerDeletion": False}]
    assert owner["annotations"] == {"netdoctor.io/deadline-seconds": "150"}
    for name in ("netdoctor-abc123-client", "netdoctor-abc123-other"):  # the Job never controls a probe
        meta = pod_body(kube, name)["metadata"]
        assert [(r["kind"], r["uid"]) for r in meta["ownerReferences"]] == [("ConfigMap", "uid-cm")]
        assert not any("job-name" in key or "controller-uid" in key for key in meta["labels"])
    assert f.owner_fallbacks == ()


def test_a_shorter_deadline_bounds_the_probes_and_their_owners():
    kube = FakeKube()
    with ProbeFleet(kube, run_timeout=30, run_id="abc123", keep=True, deadline_seconds=12) as f:
        f.launch([ProbeSpec("client", "demo")])
    assert kube.objects[("Job", "demo", "netdoctor-run-abc123")]["spec"]["activeDeadlineSeconds"] == 12
    assert kube.objects[("ConfigMap", "demo", "netdoctor-run-abc123")]["metadata"]["annotations"] == {
        "netdoctor.io/deadline-seconds": "12"}
    assert pod_body(kube)["spec"]["activeDeadlineSeconds"] == 12 and pod_body(kube)["spec"]["containers"][0]["args"] == ["12"]


def test_without_rights_on_jobs_the_config_map_owns_the_probes_alone_and_says_so():
    kube = FakeKube()
    kube.fail_job_create = Forbidden(JOBS_FORBIDDEN, status=403, reason="Forbidden", server_message=JOBS_FORBIDDEN)
    with fleet(kube) as f:
        probes = f.launch([ProbeSpec("client", "demo"), ProbeSpec("other", "demo"), ProbeSpec("cap", "kube-system")])
        assert len(probes) == 3 and "ownerReferences" not in kube.objects[("ConfigMap", "demo", "netdoctor-run-abc123")]["metadata"]
        assert pod_body(kube)["metadata"]["ownerReferences"][0]["kind"] == "ConfigMap"
    assert f.owner_fallbacks == (OwnerFallback("demo", FallbackReason.FORBIDDEN, JOBS_FORBIDDEN),
                                 OwnerFallback("kube-system", FallbackReason.FORBIDDEN, JOBS_FORBIDDEN))
    text = str(f.owner_fallbacks[0])
    assert text.startswith("cannot create the run's expiring Job in namespace demo (jobs.batch is forbidden: ")
    assert "netdoctor cleanup -n demo" in text and "\n" not in text
    assert kube.objects == {} and not any(kind == "Job" for kind, _, _ in kube.deleted)


def test_a_job_the_cluster_suspends_is_deleted_and_the_config_map_owns_the_probes():
    kube = FakeKube()
    kube.suspend_jobs = True  # its deadline would never run: a suspended Job has no startTime
    with fleet(kube, keep=True) as f:
        f.launch([ProbeSpec("client", "demo")])
    assert ("Job", "demo", "netdoctor-run-abc123") in kube.deleted
    assert "ownerReferences" not in kube.objects[("ConfigMap", "demo", "netdoctor-run-abc123")]["metadata"]
    assert [fb.reason for fb in f.owner_fallbacks] == [FallbackReason.SUSPENDED]
    assert str(f.owner_fallbacks[0]).startswith("the cluster suspends the run's expiring Job in namespace demo")
    assert {ref.kind for ref in f.created} == {"ConfigMap", "Pod"}  # the deleted Job is no longer the run's


def test_capture_probe_gets_only_the_capabilities_it_needs_and_host_network():
    kube = FakeKube()
    with fleet(kube, keep=True) as f:
        f.launch([ProbeSpec("cap", "demo", role=ProbeRole.CAPTURE, capabilities=frozenset({Capability.NET_ADMIN, Capability.NET_RAW}), host_network=True)])
    body = pod_body(kube, "netdoctor-abc123-cap")
    assert body["spec"]["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["NET_ADMIN", "NET_RAW"]}
    assert body["spec"]["hostNetwork"] is True
    assert kube.deleted == []  # keep=True


def test_impersonating_probe_carries_labels_and_is_never_ready():
    kube = FakeKube()
    with fleet(kube) as f:
        f.launch([ProbeSpec("src", "demo", role=ProbeRole.SOURCE, impersonate_labels=(("app", "web"), ("pod-template-hash", "5d9")))])
        body = pod_body(kube, "netdoctor-abc123-src")
        labels = body["metadata"]["labels"]
        assert labels["app"] == "web" and labels["pod-template-hash"] == "5d9" and labels["netdoctor.io/role"] == "source"
        assert body["spec"]["containers"][0]["readinessProbe"]["exec"]["command"] == ["false"]
        assert body["metadata"]["ownerReferences"][0]["controller"] is True


def test_failure_after_owner_exists_still_deletes_it():
    kube = FakeKube()
    kube.fail_pod_create = ClusterError("boom")
    with pytest.raises(ClusterError, match="boom"):
        with fleet(kube) as f:
            f.launch([ProbeSpec("client", "demo")])
    assert ("ConfigMap", "demo", "netdoctor-run-abc123") in kube.deleted and kube.objects == {}


def test_pod_security_rejection_is_typed():
    kube = FakeKube()
    kube.fail_pod_create = Forbidden(PSA, status=403, reason="Forbidden", server_message=PSA)
    with pytest.raises(ProbeLaunchError) as info:
        with fleet(kube) as f:
            f.launch([ProbeSpec("cap", "demo", role=ProbeRole.CAPTURE, capabilities=frozenset({Capability.NET_RAW}))])
    assert info.value.reason is LaunchFailure.POD_SECURITY and info.value.spec.name == "cap"
    assert PSA in info.value.message and isinstance(info.value, ProbeError)
    assert kube.objects == {}


def test_rbac_rejection_stays_a_cluster_error():
    kube = FakeKube()
    message = 'pods is forbidden: User "system:serviceaccount:demo:nobody" cannot create resource "pods"'
    kube.fail_pod_create = Forbidden(message, status=403, server_message=message)
    with pytest.raises(Forbidden, match="cannot create resource"):
        with fleet(kube) as f:
            f.launch([ProbeSpec("client", "demo")])


def test_image_pull_error_names_the_image_and_suggests_image_flag():
    kube = FakeKube()
    kube.status_for["netdoctor-abc123-client"] = waiting("ImagePullBackOff", 'Back-off pulling image "nicolaka/netshoot:v0.13"')
    with pytest.raises(ProbeLaunchError) as info:
        with fleet(kube) as f:
            f.launch([ProbeSpec("client", "demo")])
    assert info.value.reason is LaunchFailure.IMAGE_PULL
    assert "nicolaka/netshoot:v0.13" in info.value.message and "--image" in info.value.hint
    assert kube.objects == {}


def test_timeout_while_pending_reports_what_it_waits_for():
    kube = FakeKube()
    kube.status_for["netdoctor-abc123-client"] = {
        "phase": "Pending",
        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/2 nodes are available"}],
    }
    with pytest.raises(ProbeLaunchError) as info:
        with fleet(kube, start_timeout=0.3) as f:
            f.launch([ProbeSpec("client", "demo")])
    assert info.value.reason is LaunchFailure.UNSCHEDULABLE and "0/2 nodes are available" in info.value.message
    assert "not running after 0.3s: client (unschedulable" in info.value.message


def test_pods_are_watched_from_the_lists_version_until_they_run():
    kube = FakeKube()
    kube.status_for["netdoctor-abc123-client"] = waiting("ContainerCreating")
    threading.Timer(0.2, kube.set_status, ("demo", "netdoctor-abc123-client", RUNNING)).start()
    started = time.monotonic()
    with fleet(kube, keep=True) as f:
        [probe] = f.launch([ProbeSpec("client", "demo")])
    assert probe.pod.ip == "10.244.0.9" and 0.15 <= time.monotonic() - started < 1.0
    assert kube.snapshots == ["3"]  # one list (after the owners and the pod were created), then watches
    assert kube.watched[0] == "3" and all(int(v) >= 3 for v in kube.watched)


def test_an_expired_watch_lists_again():
    kube = FakeKube()
    kube.status_for["netdoctor-abc123-client"] = waiting("ContainerCreating")
    kube.expire = {"3"}
    threading.Timer(0.1, kube.set_status, ("demo", "netdoctor-abc123-client", RUNNING)).start()
    with fleet(kube, keep=True) as f:
        f.launch([ProbeSpec("client", "demo")])
    assert kube.watched[0] == "3" and len(kube.snapshots) >= 2


def test_a_probe_deleted_while_starting_is_gone():
    kube = FakeKube()
    kube.status_for["netdoctor-abc123-client"] = waiting("ContainerCreating")
    threading.Timer(0.1, kube.remove_pod, ("demo", "netdoctor-abc123-client")).start()
    with pytest.raises(ProbeLaunchError) as info:
        with fleet(kube) as f:
            f.launch([ProbeSpec("client", "demo")])
    assert info.value.reason is LaunchFailure.GONE and "was deleted while starting" in info.value.message


def test_a_watch_that_stalls_is_a_cluster_error_and_still_cleans_up():
    kube = FakeKube()
    kube.status_for["netdoctor-abc123-client"] = waiting("ContainerCreating")

    def stalled(*args):
        raise Stalled("the API server at https://x did not answer within 30s (watching pods)")

    kube.watch = stalled
    with pytest.raises(Stalled, match="did not answer within 30s"):
        with fleet(kube) as f:
            f.launch([ProbeSpec("client", "demo")])
    assert kube.objects == {}


def test_ctrl_c_while_waiting_cleans_up_owners_first():
    kube = FakeKube()
    kube.status_for["netdoctor-abc123-client"] = waiting("ContainerCreating")
    interrupt_after(0.2)
    with pytest.raises(KeyboardInterrupt):
        with fleet(kube) as f:
            f.launch([ProbeSpec("client", "demo")])
    assert kube.objects == {}
    assert [k[0] for k in kube.deleted] == ["Job", "ConfigMap", "Pod"]  # each owner's dependents go with it


def test_ctrl_c_while_pods_are_being_created_cleans_up_what_they_make():
    """The creations in flight when Ctrl-C comes still make their pods: the cleanup waits for their
    answers (briefly) and deletes those too, instead of leaving a pod whose owner is already gone."""
    kube = FakeKube()
    kube.pod_create_seconds = 0.3
    interrupt_after(0.1)
    with pytest.raises(KeyboardInterrupt):
        with fleet(kube) as f:
            f.launch([ProbeSpec("client", "demo"), ProbeSpec("other", "demo")])
    time.sleep(kube.pod_create_seconds)  # any creation still in flight has answered by now
    assert kube.objects == {}
    assert {k[0] for k in kube.deleted} == {"Job", "ConfigMap", "Pod"}


def test_ctrl_c_cleanup_is_bounded_and_says_how_to_finish():
    kube = FakeKube()
    kube.status_for["netdoctor-abc123-client"] = waiting("ContainerCreating")
    kube.stall_deletes = True
    interrupt_after(0.2)
    started = time.monotonic()
    with pytest.raises(Interrupted) as info:
        with fleet(kube) as f:
            f.launch([ProbeSpec("client", "demo"), ProbeSpec("other", "demo")])
    assert time.monotonic() - started < 0.2 + INTERRUPT_BUDGET + 0.2
    assert isinstance(info.value.__cause__, KeyboardInterrupt) and info.value.exit_code == 130
    hint = info.value.hint
    assert hint.startswith("cleanup did not finish; to finish it run: netdoctor cleanup -n demo --run abc123 --force "
                           "(left: ")  # forced: the run's owner is still live
    assert "Job demo/netdoctor-run-abc123" in hint and "ConfigMap demo/netdoctor-run-abc123" in hint
    assert "Pod demo/netdoctor-abc123-other" in hint
    assert kube.deleted == [] and len(kube.objects) == 4


def test_a_second_ctrl_c_stops_the_cleanup_at_once():
    kube = FakeKube()
    kube.status_for["netdoctor-abc123-client"] = waiting("ContainerCreating")
    kube.stall_deletes = True
    interrupt_after(0.2, 0.5)
    started = time.monotonic()
    with pytest.raises(Interrupted) as info:
        with fleet(kube) as f:
            f.launch([ProbeSpec("client", "demo")])
    assert time.monotonic() - started < 0.8  # not the 1.5 s budget
    assert ("left: Job demo/netdoctor-run-abc123, ConfigMap demo/netdoctor-run-abc123, Pod demo/netdoctor-abc123-client"
            in info.value.hint)


def test_sigterm_cleanup_left_behind_goes_in_the_hint():
    kube = FakeKube()
    kube.stall_deletes = True
    with pytest.raises(Interrupted) as info:
        with fleet(kube) as f:
            f.launch([ProbeSpec("client", "demo"), ProbeSpec("cap", "kube-system")])
            raise Interrupted("terminated by signal 15")
    assert info.value.message == "terminated by signal 15"
    assert ("netdoctor cleanup -n demo --run abc123 --force && netdoctor cleanup -n kube-system --run abc123 --force"
            in info.value.hint)


def test_the_pods_are_deleted_at_once_then_their_owners():
    kube = FakeKube()
    kube.delete_seconds = 0.2
    with fleet(kube) as f:
        f.launch([ProbeSpec(name, "demo") for name in ("a", "b", "c", "d")])
    kinds = [kind for kind, _ in kube.deleting]
    assert kinds == ["Pod"] * 4 + ["ConfigMap", "Job"]
    pods = [when for kind, when in kube.deleting if kind == "Pod"]
    assert max(pods) - min(pods) < kube.delete_seconds  # all four in flight together, not one after another
    assert not [k for k in kube.objects if k[0] in ("Pod", "ConfigMap", "Job")]


def test_cleanup_failure_is_reported_without_masking_the_original_error():
    kube = FakeKube()
    kube.fail_delete = {"netdoctor-abc123-client"}
    kube.status_for["netdoctor-abc123-client"] = waiting("ErrImagePull")
    with pytest.raises(ProbeLaunchError) as info:
        with fleet(kube) as f:
            f.launch([ProbeSpec("client", "demo")])
    assert "cleanup failed" in info.value.hint and "netdoctor cleanup -n demo --run abc123 --force" in info.value.hint
    assert f.cleanup_failures and ("ConfigMap", "demo", "netdoctor-run-abc123") in kube.deleted


def test_cleanup_failure_after_success_raises():
    kube = FakeKube()
    kube.fail_delete = {"netdoctor-run-abc123"}
    with pytest.raises(ClusterError, match="cleanup failed"):
        with fleet(kube) as f:
            f.launch([ProbeSpec("client", "demo")])


def test_one_owner_per_namespace_and_probe_methods():
    kube = FakeKube()
    kube.exec_result = ExecResult(0, b"netdoctor-tcp attempt=1 rc=0 t0=1.0 t1=1.1 err=\n", b"")
    with fleet(kube) as f:
        probes = f.launch([ProbeSpec("a", "demo"), ProbeSpec("b", "other")])
        assert {k for k in kube.objects if k[0] == "ConfigMap"} == {
            ("ConfigMap", "demo", "netdoctor-run-abc123"), ("ConfigMap", "other", "netdoctor-run-abc123")}
        assert probes[1].tcp_connect("10.96.0.1", 443)[0].outcome is TcpOutcome.CONNECTED
        assert probes[1].tcp_connect("10.96.0.1", 443)[0].outcome is TcpOutcome.CONNECTED
        assert kube.channels_refused == 1  # tried once; without a channel, every command is an exec
        assert len(kube.execs) == 2 and kube.execs[-1][:2] == ["bash", "-c"]
        with pytest.raises(ValueError):
            f.launch([ProbeSpec("a", "demo")])


def test_a_ping_an_old_iputils_refuses_asks_again_with_its_interval():
    kube = FakeKube()
    kube.exec_result = ExecResult(2, b"", b"ping: cannot flood; minimal interval allowed for user is 200ms\n")
    with fleet(kube) as f:
        probe = f.launch([ProbeSpec("a", "demo")])[0]
        probe.ping("10.0.0.2", 1472)
    assert [c[c.index("-i") + 1] for c in kube.execs] == ["0.002", "0.2"]


def test_listeners_of_unavailable_when_exec_forbidden():
    kube = FakeKube()

    def forbidden(*a, **kw):
        raise Forbidden("pods/exec is forbidden", status=403, server_message="pods/exec is forbidden")

    kube.exec = forbidden
    pod = Pod.from_api({"metadata": {"name": "web", "namespace": "demo"}, "status": {"podIP": "10.0.0.1"}})
    table = listeners_of(kube, pod)
    assert table.status is ListenerStatus.UNAVAILABLE and "forbidden" in table.detail


def launched(kube, run_id="abc123", namespace="demo", **kw):
    """A run's objects left in the fake cluster, as after `--keep` or a kill -9."""
    ProbeFleet(kube, run_timeout=30, run_id=run_id, **kw).launch([ProbeSpec("client", namespace)])


def test_cleanup_leftovers_deletes_expired_runs_pods_first():
    kube = FakeKube()
    launched(kube)
    result = cleanup_leftovers(kube, None, now=T0 + timedelta(seconds=151))  # the deadline was 150 s
    assert [str(ref) for ref in result.deleted] == [
        "Pod demo/netdoctor-abc123-client", "ConfigMap demo/netdoctor-run-abc123", "Job demo/netdoctor-run-abc123"]
    assert result.spared == () and kube.objects == {}


def test_cleanup_leftovers_spares_a_live_run_unless_forced():
    kube = FakeKube()
    launched(kube)
    result = cleanup_leftovers(kube, "demo", now=T0 + timedelta(seconds=10))
    assert result.deleted == () and len(kube.objects) == 3 and kube.deleted == []
    [left] = result.spared
    assert (left.run_id, left.namespace, left.state) == ("abc123", "demo", RunState.LIVE)
    assert left.expires == T0 + timedelta(seconds=150) and len(left.objects) == 3
    forced = cleanup_leftovers(kube, "demo", force=True, now=T0 + timedelta(seconds=10))
    assert len(forced.deleted) == 3 and forced.spared == () and kube.objects == {}


def test_a_finished_owner_job_ends_the_run_before_its_deadline():
    kube = FakeKube()
    launched(kube)
    job = kube.objects[("Job", "demo", "netdoctor-run-abc123")]
    job["status"] = {"startTime": CREATED, "conditions": [
        {"type": "FailureTarget", "status": "True", "lastTransitionTime": "2030-01-01T12:00:20Z"},
        {"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "lastTransitionTime": "2030-01-01T12:00:20Z"}]}
    result = cleanup_leftovers(kube, "demo", now=T0 + timedelta(seconds=30))
    assert len(result.deleted) == 3 and kube.objects == {}


def test_dry_run_lists_what_would_go_and_deletes_nothing():
    kube = FakeKube()
    launched(kube)
    launched(kube, "live22")
    kube.objects[("ConfigMap", "demo", "netdoctor-run-live22")]["metadata"]["creationTimestamp"] = "2030-01-01T12:10:00Z"
    kube.objects[("Job", "demo", "netdoctor-run-live22")]["metadata"]["creationTimestamp"] = "2030-01-01T12:10:00Z"
    result = cleanup_leftovers(kube, "demo", dry_run=True, now=T0 + timedelta(seconds=200))
    assert [ref.name for ref in result.deleted] == ["netdoctor-abc123-client", "netdoctor-run-abc123",
                                                    "netdoctor-run-abc123"]
    assert [left.run_id for left in result.spared] == ["live22"]
    assert kube.deleted == [] and len(kube.objects) == 6


def test_a_run_without_a_job_is_live_until_its_config_maps_deadline():
    kube = FakeKube()
    kube.fail_job_create = Forbidden(JOBS_FORBIDDEN, status=403, reason="Forbidden", server_message=JOBS_FORBIDDEN)
    launched(kube)
    assert cleanup_leftovers(kube, "demo", now=T0 + timedelta(seconds=149)).spared[0].state is RunState.LIVE
    assert len(cleanup_leftovers(kube, "demo", now=T0 + timedelta(seconds=150)).deleted) == 2


def test_leftovers_without_a_known_deadline_are_expired():
    kube = FakeKube()  # an owner ConfigMap from a netdoctor that did not annotate its deadline
    launched(kube)
    del kube.objects[("Job", "demo", "netdoctor-run-abc123")]
    del kube.objects[("ConfigMap", "demo", "netdoctor-run-abc123")]["metadata"]["annotations"]
    assert len(cleanup_leftovers(kube, "demo", now=T0).deleted) == 2


def test_orphan_probes_are_live_until_their_own_deadline_unless_they_ended():
    kube = FakeKube()
    launched(kube)
    del kube.objects[("Job", "demo", "netdoctor-run-abc123")]
    del kube.objects[("ConfigMap", "demo", "netdoctor-run-abc123")]
    assert cleanup_leftovers(kube, "demo", now=T0 + timedelta(seconds=100)).spared[0].state is RunState.LIVE
    kube.objects[("Pod", "demo", "netdoctor-abc123-client")]["status"] = {"phase": "Failed"}
    assert len(cleanup_leftovers(kube, "demo", now=T0 + timedelta(seconds=100)).deleted) == 1


def test_cleanup_without_rights_on_jobs_judges_runs_by_their_config_maps():
    kube = FakeKube()
    launched(kube)
    kube.forbid_job_list = True
    result = cleanup_leftovers(kube, "demo", now=T0 + timedelta(seconds=151))
    assert [ref.kind for ref in result.deleted] == ["Pod", "ConfigMap"]
    assert result.unlisted == ('jobs.batch: jobs.batch is forbidden: User "dev" cannot list resource "jobs" in API '
                               'group "batch"',)


def test_cleanup_leftovers_of_one_run():
    kube = FakeKube()
    launched(kube)
    launched(kube, "other1")
    result = cleanup_leftovers(kube, "demo", "abc123", force=True, now=T0)
    assert [str(ref) for ref in result.deleted] == [
        "Pod demo/netdoctor-abc123-client", "ConfigMap demo/netdoctor-run-abc123", "Job demo/netdoctor-run-abc123"]
    assert {name for _, _, name in kube.objects} == {"netdoctor-other1-client", "netdoctor-run-other1"}


def test_not_found_is_a_cluster_error():
    assert isinstance(NotFound("Service", "web", "demo", 'services "web" not found'), ClusterError)


def test_a_probe_that_runs_is_handed_over_while_the_others_still_start():
    """`launch_all` tells its caller of each probe that runs, and of every pod IP known (a pod has
    its IP before it runs): a node's capture can listen before the traffic probes run. What it
    hands over is the very probe the launch returns."""
    kube = FakeKube()
    kube.status_for["netdoctor-abc123-client"] = dict(waiting("ContainerCreating"), podIP="10.244.0.7")
    threading.Timer(0.2, kube.set_status, ("demo", "netdoctor-abc123-client", RUNNING)).start()
    told = []
    capture = ProbeSpec("capture-node-1", "demo", ProbeRole.CAPTURE, "node-1", host_network=True)
    with fleet(kube, keep=True) as f:
        launch = f.launch_all([ProbeSpec("client", "demo")], [capture], told.append)
    early = told[0]
    assert set(early.running) == {"capture-node-1"} and early.ips["client"] == "10.244.0.7"
    assert set(told[-1].running) == {"client", "capture-node-1"}
    assert launch.probes["capture-node-1"] is early.running["capture-node-1"]
    assert launch.probes["client"] is told[-1].running["client"]
