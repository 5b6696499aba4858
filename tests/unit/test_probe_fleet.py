"""ProbeFleet against a fake of our own Kube wrapper: manifests, waiting, failures, cleanup."""

import pytest

from netdoctor.errors import ClusterError, ProbeError
from netdoctor.cluster.kube import Forbidden, NotFound
from netdoctor.cluster.objects import Pod
from netdoctor.observations import ExecResult, ListenerStatus, TcpOutcome
from netdoctor.probe.fleet import (
    Capability,
    LaunchFailure,
    ProbeFleet,
    ProbeLaunchError,
    ProbeRole,
    ProbeSpec,
    cleanup_leftovers,
    listeners_of,
)

PSA = 'pods "x" is forbidden: violates PodSecurity "baseline:latest": non-default capabilities (container "probe" must not include "NET_ADMIN", "NET_RAW" in securityContext.capabilities.add)'


class FakeKube:
    """Stores what was created; pods go Running at the first poll unless a test says otherwise."""

    def __init__(self):
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.deleted: list[tuple[str, str, str]] = []
        self.status_for: dict[str, dict] = {}  # pod name -> status to report
        self.fail_pod_create: Exception | None = None
        self.fail_delete: set[str] = set()
        self.execs: list[list[str]] = []
        self.exec_result = ExecResult(0, b"", b"")

    def create_config_map(self, namespace, body):
        obj = dict(body, metadata=dict(body["metadata"], uid="uid-cm"))
        self.objects[("ConfigMap", namespace, body["metadata"]["name"])] = obj
        return obj

    def create_pod(self, namespace, body):
        if self.fail_pod_create:
            raise self.fail_pod_create
        self.objects[("Pod", namespace, body["metadata"]["name"])] = body
        return Pod.from_api(body)

    def pods(self, namespace, label_selector=None, field_selector=None):
        key, value = label_selector.split("=")
        result = []
        for (kind, ns, name), body in self.objects.items():
            if kind == "Pod" and ns == namespace and body["metadata"]["labels"].get(key) == value:
                status = self.status_for.get(name, RUNNING)
                result.append(Pod.from_api(dict(body, status=status)))
        return result

    def delete(self, kind, namespace, name):
        if name in self.fail_delete:
            raise ClusterError(f"cannot delete {name}: connection refused")
        self.deleted.append((kind, namespace, name))
        return self.objects.pop((kind, namespace, name), None) is not None

    def list_objects(self, kind, namespace=None, label_selector=None, field_selector=None):
        return [o for (k, ns, _), o in self.objects.items() if k == kind and namespace in (None, ns)]

    def exec(self, namespace, pod, command, container=None, *, timeout):
        self.execs.append(command)
        return self.exec_result


RUNNING = {"phase": "Running", "podIP": "10.244.0.9", "containerStatuses": [{"name": "probe", "ready": True, "state": {"running": {}}}]}


def waiting(reason, message=""):
    return {"phase": "Pending", "containerStatuses": [{"name": "probe", "ready": False, "state": {"waiting": {"reason": reason, "message": message}}}]}


def fleet(kube, **kw):
    kw.setdefault("sleep", lambda s: None)
    return ProbeFleet(kube, run_timeout=30, run_id="abc123", **kw)


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
    now = [0.0]

    def sleep(seconds):
        now[0] += seconds

    with pytest.raises(ProbeLaunchError) as info:
        with fleet(kube, start_timeout=5, clock=lambda: now[0], sleep=sleep) as f:
            f.launch([ProbeSpec("client", "demo")])
    assert info.value.reason is LaunchFailure.UNSCHEDULABLE and "0/2 nodes are available" in info.value.message


def test_keyboard_interrupt_while_waiting_cleans_up():
    kube = FakeKube()
    kube.status_for["netdoctor-abc123-client"] = waiting("ContainerCreating")

    def interrupt(seconds):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        with fleet(kube, sleep=interrupt) as f:
            f.launch([ProbeSpec("client", "demo")])
    assert kube.objects == {}
    assert [k[0] for k in kube.deleted] == ["Pod", "ConfigMap"]


def test_cleanup_failure_is_reported_without_masking_the_original_error():
    kube = FakeKube()
    kube.fail_delete = {"netdoctor-abc123-client"}
    kube.status_for["netdoctor-abc123-client"] = waiting("ErrImagePull")
    with pytest.raises(ProbeLaunchError) as info:
        with fleet(kube) as f:
            f.launch([ProbeSpec("client", "demo")])
    assert "cleanup failed" in info.value.hint and "netdoctor cleanup" in info.value.hint
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
        assert kube.execs[-1][:2] == ["bash", "-c"]
        with pytest.raises(ValueError):
            f.launch([ProbeSpec("a", "demo")])


def test_listeners_of_unavailable_when_exec_forbidden():
    kube = FakeKube()

    def forbidden(*a, **kw):
        raise Forbidden("pods/exec is forbidden", status=403, server_message="pods/exec is forbidden")

    kube.exec = forbidden
    pod = Pod.from_api({"metadata": {"name": "web", "namespace": "demo"}, "status": {"podIP": "10.0.0.1"}})
    table = listeners_of(kube, pod)
    assert table.status is ListenerStatus.UNAVAILABLE and "forbidden" in table.detail


def test_cleanup_leftovers_deletes_managed_objects():
    kube = FakeKube()
    f = fleet(kube)
    f.launch([ProbeSpec("client", "demo")])
    deleted = cleanup_leftovers(kube, None)
    assert deleted == ["Pod demo/netdoctor-abc123-client", "ConfigMap demo/netdoctor-run-abc123"]
    assert kube.objects == {}


def test_not_found_is_a_cluster_error():
    assert isinstance(NotFound("Service", "web", "demo", 'services "web" not found'), ClusterError)
