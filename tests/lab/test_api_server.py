"""The lab API server end to end, through the official kubernetes client and a generated kubeconfig."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import threading

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
from kubernetes.stream import stream

from netdoctor.lab.api import auth, kubeconfig, pki
from netdoctor.lab.api.server import ApiServer
from netdoctor.lab.api.store import Store

LAB = "testlab"


class LocalRuntime:
    """Runs exec'd commands on this machine (no namespaces); logs from a file per pod."""

    def __init__(self, log_dir):
        self.log_dir = log_dir

    def exec(self, pod, container, command, stdin, tty):
        return subprocess.Popen(command, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=self.log_dir)

    def log_path(self, pod, container):
        path = os.path.join(self.log_dir, f"{pod['metadata']['name']}.log")
        return path if os.path.exists(path) else None


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("api")
    store = Store(seed=7)
    tokens = auth.new_tokens()
    tls = pki.generate(tmp / "pki")
    server = ApiServer(store, LocalRuntime(str(tmp)), tls, tokens)
    port = server.start()
    path = kubeconfig.write(tmp / "kubeconfig", LAB, port, tls, tokens)
    store.create("namespaces", {"metadata": {"name": "demo"}})
    yield store, path, tmp
    server.stop()


@pytest.fixture(scope="module")
def admin(lab):
    return config.new_client_from_config(config_file=str(lab[1]), context=LAB)


@pytest.fixture(scope="module")
def core(admin):
    return client.CoreV1Api(admin)


def pod(name, node="node-1", **spec):
    return {"metadata": {"name": name, "labels": {"app": name}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox:1.36"}], **spec}}


def running_pod(lab, name):
    store = lab[0]
    created = store.create("pods", pod(name), "demo")
    store.update_status("pods", "demo", name, {**created["status"], "phase": "Running"})
    return created


def status_of(exc: ApiException) -> dict:
    return json.loads(exc.body)


def test_discovery_lists_every_group_and_version(admin):
    assert client.VersionApi(admin).get_code().git_version.startswith("v1.36")
    groups = {g.name for g in client.ApisApi(admin).get_api_versions().groups}
    assert groups == {"apps", "batch", "discovery.k8s.io", "networking.k8s.io"}
    core_resources = {r.name for r in client.CoreV1Api(admin).get_api_resources().resources}
    assert {"pods", "pods/exec", "pods/ephemeralcontainers", "services", "namespaces", "events"} <= core_resources


def test_namespace_lifecycle_and_system_objects(core):
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="tmp-ns")))
    names = {n.metadata.name for n in core.list_namespace().items}
    assert {"default", "kube-system", "tmp-ns"} <= names
    assert core.read_namespaced_service("kubernetes", "default").spec.cluster_ip == "10.96.0.1"
    core.create_namespaced_config_map("tmp-ns", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm")))
    core.delete_namespace("tmp-ns")
    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map("cm", "tmp-ns")
    assert err.value.status == 404


def test_pods_list_by_label_and_field_selector(core):
    core.create_namespaced_pod("demo", pod("sel-a", node="node-1"))
    core.create_namespaced_pod("demo", pod("sel-b", node="node-2"))
    read = core.read_namespaced_pod("sel-a", "demo")
    assert read.status.phase == "Pending" and read.spec.restart_policy == "Always"
    assert [p.metadata.name for p in core.list_namespaced_pod("demo", label_selector="app=sel-b").items] == ["sel-b"]
    on_node2 = core.list_pod_for_all_namespaces(field_selector="spec.nodeName=node-2").items
    assert [p.metadata.name for p in on_node2] == ["sel-b"]
    assert core.delete_namespaced_pod("sel-a", "demo").metadata.name == "sel-a"
    assert "sel-a" not in {p.metadata.name for p in core.list_namespaced_pod("demo").items}


def test_errors_are_real_status_objects(core):
    with pytest.raises(ApiException) as err:
        core.read_namespaced_pod("nope", "demo")
    assert err.value.status == 404
    assert status_of(err.value) == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                    "message": 'pods "nope" not found', "reason": "NotFound",
                                    "details": {"name": "nope", "kind": "pods"}, "code": 404}
    core.create_namespaced_pod("demo", pod("dup"))
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod("demo", pod("dup"))
    assert (err.value.status, status_of(err.value)["reason"]) == (409, "AlreadyExists")
    assert status_of(err.value)["message"] == 'pods "dup" already exists'
    bad = {"metadata": {"name": "Bad_Name"}, "spec": {"containers": []}}
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod("demo", bad)
    body = status_of(err.value)
    assert err.value.status == 422 and body["reason"] == "Invalid"
    assert body["message"].startswith('Pod "Bad_Name" is invalid: [metadata.name: Invalid value: "Bad_Name": a lowercase')
    assert body["message"].endswith(", spec.containers: Required value]")
    assert [(c["reason"], c["field"]) for c in body["details"]["causes"]] == [
        ("FieldValueInvalid", "metadata.name"), ("FieldValueRequired", "spec.containers")]
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod("missing-ns", pod("x"))
    assert status_of(err.value)["message"] == 'namespaces "missing-ns" not found'


def test_services_get_cluster_ips_and_node_ports(core):
    spec = {"selector": {"app": "web"}, "ports": [{"port": 80}]}
    web = core.create_namespaced_service("demo", {"metadata": {"name": "web"}, "spec": spec})
    assert web.spec.cluster_ip.startswith("10.96.") and web.spec.cluster_ip != "10.96.0.1"
    assert (web.spec.ports[0].protocol, web.spec.ports[0].target_port) == ("TCP", 80)
    dns = core.create_namespaced_service("demo", {"metadata": {"name": "dns"}, "spec": {**spec, "clusterIP": "10.96.0.10"}})
    assert dns.spec.cluster_ip == "10.96.0.10"
    with pytest.raises(ApiException) as err:
        core.create_namespaced_service("demo", {"metadata": {"name": "dns2"}, "spec": {**spec, "clusterIP": "10.96.0.10"}})
    assert err.value.status == 422 and "provided IP is already allocated" in status_of(err.value)["message"]
    headless = core.create_namespaced_service("demo", {"metadata": {"name": "hl"}, "spec": {**spec, "clusterIP": "None"}})
    assert headless.spec.cluster_ip == "None"
    node_port = core.create_namespaced_service("demo", {"metadata": {"name": "np"}, "spec": {**spec, "type": "NodePort"}})
    assert 30000 <= node_port.spec.ports[0].node_port <= 32767


def test_patch_merge_strategic_and_json(core):
    core.create_namespaced_config_map("demo", {"metadata": {"name": "p"}, "data": {"a": "1"}})
    merged = core.patch_namespaced_config_map("p", "demo", {"data": {"b": "2"}})
    assert merged.data == {"a": "1", "b": "2"}
    jp = core.patch_namespaced_config_map("p", "demo", [{"op": "remove", "path": "/data/a"}])
    assert jp.data == {"b": "2"}
    core.create_namespaced_pod("demo", pod("patched"))
    labelled = core.patch_namespaced_pod("patched", "demo", {"metadata": {"labels": {"tier": "x"}}})
    assert labelled.metadata.labels == {"app": "patched", "tier": "x"}
    status = core.patch_namespaced_pod_status("patched", "demo", {"status": {"phase": "Running", "podIP": "10.244.1.5"}})
    assert (status.status.phase, status.status.pod_ip) == ("Running", "10.244.1.5")


def test_deleting_an_owner_garbage_collects_its_pods(core):
    owner = core.create_namespaced_config_map("demo", {"metadata": {"name": "run-1"}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "run-1", "uid": owner.metadata.uid, "controller": True}
    probe = pod("probe-1")
    probe["metadata"]["ownerReferences"] = [ref]
    core.create_namespaced_pod("demo", probe)
    core.delete_namespaced_config_map("run-1", "demo")
    with pytest.raises(ApiException) as err:
        core.read_namespaced_pod("probe-1", "demo")
    assert err.value.status == 404


def test_limited_user_can_read_but_not_write_or_exec(lab):
    limited = client.CoreV1Api(config.new_client_from_config(config_file=str(lab[1]), context=f"{LAB}-limited"))
    assert limited.list_namespaced_pod("demo").items is not None
    with pytest.raises(ApiException) as err:
        limited.create_namespaced_pod("demo", pod("nope"))
    assert err.value.status == 403
    assert status_of(err.value)["message"] == (
        'pods is forbidden: User "lab-limited" cannot create resource "pods" in API group "" in the namespace "demo"')
    running_pod(lab, "exec-target-limited")
    with pytest.raises(ApiException) as err:
        stream(limited.connect_get_namespaced_pod_exec, "exec-target-limited", "demo", command=["true"],
               stdout=True, stderr=True, _preload_content=False)
    # the client reports a refused WebSocket handshake as status 0 with the HTTP status and body in `reason`
    assert "Handshake status 403 Forbidden" in err.value.reason
    assert r'cannot create resource \"pods/exec\" in API group' in err.value.reason


def test_no_token_is_unauthorized(lab, admin):
    settings = copy.deepcopy(admin.configuration)
    settings.api_key = {}
    with pytest.raises(ApiException) as err:
        client.CoreV1Api(client.ApiClient(settings)).list_namespace()
    assert err.value.status == 401 and status_of(err.value)["reason"] == "Unauthorized"


def test_pod_security_rejects_capabilities_in_baseline(core):
    core.create_namespace({"metadata": {"name": "secure", "labels": {"pod-security.kubernetes.io/enforce": "baseline"}}})
    capture = pod("capture")
    capture["spec"]["containers"][0]["securityContext"] = {"capabilities": {"add": ["NET_RAW", "NET_ADMIN"]}}
    with pytest.raises(ApiException) as err:
        core.create_namespaced_pod("secure", capture)
    assert err.value.status == 403
    assert status_of(err.value)["message"] == (
        'pods "capture" is forbidden: violates PodSecurity "baseline:latest": non-default capabilities '
        '(container "c" must not include "NET_ADMIN", "NET_RAW" in securityContext.capabilities.add)')


def test_watch_streams_added_modified_deleted(core, lab):
    core.create_namespaced_config_map("demo", {"metadata": {"name": "w0", "labels": {"watch": "yes"}}})
    seen, started = [], threading.Event()

    def watcher():
        for event in watch.Watch().stream(core.list_namespaced_config_map, "demo", label_selector="watch=yes",
                                          timeout_seconds=3):
            seen.append((event["type"], event["object"].metadata.name))
            started.set()
            if event["type"] == "DELETED":
                break

    thread = threading.Thread(target=watcher)
    thread.start()
    assert started.wait(3)
    core.create_namespaced_config_map("demo", {"metadata": {"name": "w1", "labels": {"watch": "yes"}}})
    core.patch_namespaced_config_map("w1", "demo", {"data": {"k": "v"}})
    core.delete_namespaced_config_map("w1", "demo")
    thread.join(5)
    assert seen == [("ADDED", "w0"), ("ADDED", "w1"), ("MODIFIED", "w1"), ("DELETED", "w1")]


def test_exec_returns_text_and_exit_codes(core, lab):
    running_pod(lab, "exec-target")
    out = stream(core.connect_get_namespaced_pod_exec, "exec-target", "demo", command=["echo", "hello"],
                 stderr=True, stdin=False, stdout=True, tty=False)
    assert out == "hello\n"
    resp = stream(core.connect_get_namespaced_pod_exec, "exec-target", "demo", command=["sh", "-c", "echo oops >&2; exit 3"],
                  stderr=True, stdout=True, _preload_content=False)
    resp.run_forever(timeout=10)
    assert resp.read_stderr() == "oops\n"
    assert resp.returncode == 3


def test_exec_is_binary_exact_and_forwards_stdin(core, lab):
    running_pod(lab, "exec-binary")
    payload = bytes(range(256)) * 800
    (lab[2] / "all-bytes").write_bytes(payload)
    resp = stream(core.connect_get_namespaced_pod_exec, "exec-binary", "demo", command=["cat", "all-bytes"],
                  stderr=True, stdout=True, _preload_content=False, binary=True)
    resp.run_forever(timeout=10)
    assert resp.read_stdout() == payload
    assert resp.returncode == 0
    resp = stream(core.connect_get_namespaced_pod_exec, "exec-binary", "demo", command=["head", "-c", "5"],
                  stdin=True, stderr=True, stdout=True, _preload_content=False, binary=True)
    resp.write_stdin(b"\x00\xffabcdef")
    resp.run_forever(timeout=10)
    assert resp.read_stdout() == b"\x00\xffabc"


def test_exec_missing_binary_and_bad_pods(core, lab):
    running_pod(lab, "exec-missing")
    resp = stream(core.connect_get_namespaced_pod_exec, "exec-missing", "demo", command=["nosuchcmd"],
                  stderr=True, stdout=True, _preload_content=False)
    resp.run_forever(timeout=10)
    status = json.loads(resp.read_channel(3))
    assert (status["reason"], status["code"]) == ("InternalError", 500)
    assert 'exec: "nosuchcmd": executable file not found in $PATH: unknown' in status["message"]
    assert resp.read_stdout() == "" and resp.read_stderr() == ""
    core.create_namespaced_pod("demo", pod("pending"))
    with pytest.raises(ApiException) as err:
        stream(core.connect_get_namespaced_pod_exec, "pending", "demo", command=["true"], stdout=True)
    assert "Handshake status 400 Bad Request" in err.value.reason
    assert r'container not found (\"c\")' in err.value.reason
    with pytest.raises(ApiException) as err:
        core.connect_get_namespaced_pod_exec("exec-missing", "demo", command=["true"], stdout=True)
    assert status_of(err.value)["message"] == "Upgrade request required"


def test_every_kind_deserialises_into_client_models(admin, core):
    apps, discovery, networking = client.AppsV1Api(admin), client.DiscoveryV1Api(admin), client.NetworkingV1Api(admin)
    template = {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}}
    workload = {"selector": {"matchLabels": {"app": "d"}}, "template": template}
    deployment = apps.create_namespaced_deployment("demo", {"metadata": {"name": "d"}, "spec": workload})
    assert isinstance(deployment, client.V1Deployment) and deployment.spec.replicas == 1
    assert isinstance(apps.create_namespaced_replica_set("demo", {"metadata": {"name": "d-1"}, "spec": workload}),
                      client.V1ReplicaSet)
    slice_ = {"metadata": {"name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}}, "addressType": "IPv4",
              "endpoints": [{"addresses": ["10.244.1.5"], "conditions": {"ready": True}, "nodeName": "node-1"}],
              "ports": [{"name": "", "port": 8080, "protocol": "TCP"}]}
    created = discovery.create_namespaced_endpoint_slice("demo", slice_)
    assert created.endpoints[0].conditions.ready is True
    policy = {"metadata": {"name": "deny"}, "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}
    assert networking.create_namespaced_network_policy("demo", policy).spec.policy_types == ["Ingress"]
    node = core.create_node({"metadata": {"name": "node-9"}, "status": {"addresses": [{"type": "InternalIP", "address": "192.168.50.9"}]}})
    assert isinstance(node, client.V1Node)
    event = core.create_namespaced_event("demo", {"metadata": {"name": "e1"}, "involvedObject": {"kind": "Pod", "name": "x"},
                                                   "reason": "Created", "message": "made", "type": "Normal"})
    assert isinstance(event, client.CoreV1Event)
    assert isinstance(core.read_namespace("demo"), client.V1Namespace)
    assert isinstance(core.list_namespaced_endpoints("demo"), client.V1EndpointsList)
    assert [d.metadata.name for d in apps.list_deployment_for_all_namespaces().items] == ["d"]


def test_ephemeral_containers_are_added_with_admission(core, lab):
    running_pod(lab, "debug-me")
    body = {"spec": {"ephemeralContainers": [{"name": "dbg", "image": "busybox", "targetContainerName": "c"}]}}
    updated = core.patch_namespaced_pod_ephemeralcontainers("debug-me", "demo", body)
    assert [c.name for c in updated.spec.ephemeral_containers] == ["dbg"]
    core.create_namespace({"metadata": {"name": "strict", "labels": {"pod-security.kubernetes.io/enforce": "baseline"}}})
    lab[0].create("pods", pod("strict-pod"), "strict")
    privileged = {"spec": {"ephemeralContainers": [{"name": "cap", "image": "busybox", "securityContext": {"privileged": True}}]}}
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_pod_ephemeralcontainers("strict-pod", "strict", privileged)
    assert status_of(err.value)["message"] == ('pods "strict-pod" is forbidden: violates PodSecurity "baseline:latest": '
                                               'privileged (container "cap" must not set securityContext.privileged=true)')
