"""The official kubernetes client works against the lab: list, create, delete, exec (text and binary)."""

import hashlib

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.stream import stream

from netdoctor.lab import lifecycle
from netdoctor.lab.state import LabConfig

from labkit import start, unique_name

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab():
    running = start(LabConfig(unique_name()))
    yield running
    lifecycle.down(running.name)


def exec_raw(v1, pod, command):
    ws = stream(v1.connect_get_namespaced_pod_exec, pod, "default", command=command, stdout=True,
                stderr=True, stdin=False, tty=False, _preload_content=False, binary=True)
    out = b""
    while ws.is_open():
        ws.update(timeout=1)
        out += ws.read_stdout() if ws.peek_stdout() else b""
    out += ws.read_stdout() if ws.peek_stdout() else b""
    return out, ws.returncode


def test_list_create_exec_delete(lab):
    v1, _ = lab.api()
    names = {p.metadata.name.rsplit("-", 2)[0] for p in v1.list_pod_for_all_namespaces().items}
    assert {"api", "db", "frontend", "coredns", "toolbox"} <= names
    v1.create_namespaced_pod("default", client.V1Pod(
        metadata=client.V1ObjectMeta(name="probe", labels={"app.kubernetes.io/managed-by": "netdoctor"}),
        spec=client.V1PodSpec(node_name="node-2", containers=[client.V1Container(name="p", image="nicolaka/netshoot")])))
    lab.wait(lambda: v1.read_namespaced_pod("probe", "default").status.phase == "Running", what="probe running")
    pod = v1.read_namespaced_pod("probe", "default")
    assert pod.spec.node_name == "node-2" and pod.status.pod_ip.startswith("10.244.2.")

    text = stream(v1.connect_get_namespaced_pod_exec, "probe", "default", command=["cat", "/etc/resolv.conf"],
                  stdout=True, stderr=True, stdin=False, tty=False)
    assert "search default.svc.cluster.local svc.cluster.local cluster.local" in text and "ndots:5" in text

    payload = bytes(range(256)) * 4000
    out, code = exec_raw(v1, "probe", ["sh", "-c", "head -c 1024000 /dev/zero | tr '\\000' '\\377'; exit 3"])
    assert code == 3 and out == b"\xff" * 1024000
    out, code = exec_raw(v1, "probe", ["python3", "-c",
                         "import sys; sys.stdout.buffer.write(bytes(range(256)) * 4000)"])
    assert code == 0 and hashlib.sha256(out).digest() == hashlib.sha256(payload).digest()

    v1.delete_namespaced_pod("probe", "default")
    with pytest.raises(ApiException) as missing:
        v1.read_namespaced_pod("probe", "default")
    assert missing.value.status == 404


def test_limited_user_is_forbidden(lab):
    from kubernetes import config

    api = client.CoreV1Api(config.new_client_from_config(config_file=lab.kubeconfig, context=f"{lab.name}-limited"))
    assert api.list_namespaced_pod("shop").items
    with pytest.raises(ApiException) as denied:
        api.create_namespaced_pod("shop", client.V1Pod(metadata=client.V1ObjectMeta(name="x"), spec=client.V1PodSpec(
            containers=[client.V1Container(name="p", image="busybox")])))
    assert denied.value.status == 403 and 'cannot create resource \\"pods\\"' in denied.value.body


def test_orphan_with_a_replicasets_labels_is_adopted(lab):
    """As on a real cluster: the lab's ReplicaSet adopts a matching orphan and deletes the extra pod."""
    v1, _ = lab.api()
    template = v1.list_namespaced_pod("shop", label_selector="app=frontend").items[0]
    v1.create_namespaced_pod("shop", client.V1Pod(
        metadata=client.V1ObjectMeta(name="orphan", labels=template.metadata.labels),
        spec=client.V1PodSpec(containers=[client.V1Container(name="p", image="x")])))
    lab.wait(lambda: len(v1.list_namespaced_pod("shop", label_selector="app=frontend").items) == 1,
             what="the ReplicaSet to scale back to 1")


def test_owned_probe_is_not_adopted_and_is_collected(lab):
    v1, _ = lab.api()
    owner = v1.create_namespaced_config_map("shop", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="run-1")))
    labels = v1.list_namespaced_pod("shop", label_selector="app=frontend").items[0].metadata.labels
    v1.create_namespaced_pod("shop", client.V1Pod(
        metadata=client.V1ObjectMeta(name="owned", labels=labels, owner_references=[client.V1OwnerReference(
            api_version="v1", kind="ConfigMap", name="run-1", uid=owner.metadata.uid, controller=True)]),
        spec=client.V1PodSpec(containers=[client.V1Container(name="p", image="x")])))
    lab.wait(lambda: v1.read_namespaced_pod("owned", "shop").status.phase == "Running", what="owned pod running")
    assert len(v1.list_namespaced_pod("shop", label_selector="app=frontend").items) == 2
    v1.delete_namespaced_config_map("run-1", "shop")
    lab.wait(lambda: not [p for p in v1.list_namespaced_pod("shop").items if p.metadata.name == "owned"],
             what="garbage collection of the owned pod")


def test_active_deadline_ends_the_pod(lab):
    v1, _ = lab.api()
    v1.create_namespaced_pod("default", client.V1Pod(metadata=client.V1ObjectMeta(name="short"), spec=client.V1PodSpec(
        active_deadline_seconds=1, containers=[client.V1Container(name="p", image="x")])))
    lab.wait(lambda: v1.read_namespaced_pod("short", "default").status.phase == "Failed", timeout=5,
             what="DeadlineExceeded")
    assert v1.read_namespaced_pod("short", "default").status.reason == "DeadlineExceeded"
