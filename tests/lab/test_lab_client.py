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

    deleted = v1.delete_namespaced_pod("probe", "default")  # graceful: Terminating until its kubelet stops it
    assert deleted.metadata.deletion_timestamp and deleted.metadata.deletion_grace_period_seconds == 30
    lab.wait(lambda: "probe" not in {p.metadata.name for p in v1.list_namespaced_pod("default").items},
             what="the probe gone")
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


def pod(name, node=None, command=None, restart="Always", host_network=False, **extra):
    return client.V1Pod(metadata=client.V1ObjectMeta(name=name), spec=client.V1PodSpec(
        node_name=node, restart_policy=restart, host_network=host_network,
        containers=[client.V1Container(name="c", image="x", command=command, **extra)]))


def test_exited_containers_end_the_pod(lab):
    v1, _ = lab.api()
    v1.create_namespaced_pod("default", pod("ok", command=["true"], restart="Never"))
    v1.create_namespaced_pod("default", pod("bad", command=["sh", "-c", "exit 3"], restart="Never"))
    lab.wait(lambda: v1.read_namespaced_pod("ok", "default").status.phase == "Succeeded", what="Succeeded")
    lab.wait(lambda: v1.read_namespaced_pod("bad", "default").status.phase == "Failed", what="Failed")
    state = v1.read_namespaced_pod("bad", "default").status.container_statuses[0].state
    assert state.terminated.exit_code == 3


def test_host_network_pod_runs_in_the_node(lab):
    v1, _ = lab.api()
    v1.create_namespaced_pod("default", pod("hostnet", node="node-1", host_network=True))
    lab.wait(lambda: v1.read_namespaced_pod("hostnet", "default").status.phase == "Running", what="hostnet")
    status = v1.read_namespaced_pod("hostnet", "default").status
    assert status.pod_ip == status.host_ip == "172.30.0.1"
    out = stream(v1.connect_get_namespaced_pod_exec, "hostnet", "default", command=["ip", "-o", "link"],
                 stdout=True, stderr=True, stdin=False, tty=False)
    assert "cni0" in out and "flannel.1" in out


def test_ephemeral_container_joins_the_pod(lab):
    v1, _ = lab.api()
    v1.create_namespaced_pod("default", pod("target", node="node-2", command=["python3", "-m", "http.server", "7070"]))
    lab.wait(lambda: v1.read_namespaced_pod("target", "default").status.phase == "Running", what="target")
    v1.patch_namespaced_pod_ephemeralcontainers("target", "default", {"spec": {"ephemeralContainers": [
        {"name": "debug", "image": "nicolaka/netshoot", "command": ["sleep", "infinity"]}]}})
    lab.wait(lambda: v1.read_namespaced_pod("target", "default").status.ephemeral_container_statuses,
             what="ephemeral container status")
    out = stream(v1.connect_get_namespaced_pod_exec, "target", "default", container="debug",
                 command=["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/7070 && echo shared"],
                 stdout=True, stderr=True, stdin=False, tty=False)
    assert "shared" in out  # the debug container sees the pod's own loopback listener


def test_node_port_answers_on_every_node(lab):
    v1, _ = lab.api()
    v1.create_namespaced_service("shop", client.V1Service(
        metadata=client.V1ObjectMeta(name="front-np"), spec=client.V1ServiceSpec(
            type="NodePort", selector={"app": "frontend"}, ports=[client.V1ServicePort(port=80, target_port=8080)])))
    node_port = v1.read_namespaced_service("front-np", "shop").spec.ports[0].node_port
    toolbox = lab.pods("ops")[0]
    from labkit import tcp

    for node_ip in ("172.30.0.1", "172.30.0.2"):
        assert lab.wait(lambda: tcp(lab.netns(toolbox), node_ip, node_port) == "ok", what=f"NodePort on {node_ip}")
