"""Kube: kubeconfig rules and error mapping, against a real local HTTP server (no client mocks)."""

import socket
import sys
import subprocess
from pathlib import Path

import pytest
import yaml

from netdoctor.errors import ClusterError, UsageError
from netdoctor.cluster.kube import Forbidden, Kube, NotFound, Unauthorized, Unreachable, parse_exec_status
from netdoctor.observations import ExecErrorKind

sys.path.insert(0, str(Path(__file__).parent))
from kubeserver import FakeApiServer, status  # noqa: E402


def kubeconfig(path: Path, server: str, context="c", namespace="demo", current=True) -> str:
    ctx = {"cluster": "k", "user": "u"} | ({"namespace": namespace} if namespace else {})
    config = {
        "apiVersion": "v1", "kind": "Config",
        "contexts": [{"name": context, "context": ctx}],
        "clusters": [{"name": "k", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
    }
    if current:
        config["current-context"] = context
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.fixture
def api():
    with FakeApiServer() as server:
        yield server


@pytest.fixture
def kube(api, tmp_path):
    return Kube.connect(kubeconfig(tmp_path / "config", api.url))


def test_connect_uses_context_namespace_and_merged_kubeconfig(api, tmp_path):
    first = kubeconfig(tmp_path / "a", api.url, context="one", namespace="ns1", current=False)
    second = kubeconfig(tmp_path / "b", api.url, context="two", namespace=None)
    environ = {"KUBECONFIG": f"{tmp_path / 'missing'}:{first}:{second}"}
    assert Kube.connect(environ=environ, context="one").namespace == "ns1"
    kube = Kube.connect(environ=environ)
    assert kube.namespace == "default" and kube.server == api.url


def test_kubeconfig_problems_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        Kube.connect(str(tmp_path / "nope"))
    bad = tmp_path / "bad"
    bad.write_text("{not: [yaml")
    with pytest.raises(UsageError, match="not usable"):
        Kube.connect(str(bad))
    good = kubeconfig(tmp_path / "good", "http://127.0.0.1:1")
    with pytest.raises(UsageError, match=r"context .other. is not in kubeconfig .*known: c"):
        Kube.connect(good, "other")
    with pytest.raises(UsageError, match="no current-context"):
        Kube.connect(kubeconfig(tmp_path / "nocur", "http://127.0.0.1:1", current=False))
    with pytest.raises(UsageError, match="no kubeconfig found"):
        Kube.connect(environ={"KUBECONFIG": str(tmp_path / "none")})


def test_404_is_typed_not_found(kube, api):
    body = status(404, "NotFound", 'services "web" not found', name="web", kind="services")
    api.routes[("GET", "/api/v1/namespaces/demo/services/web")] = (404, body)
    with pytest.raises(NotFound) as info:
        kube.service("demo", "web")
    assert (info.value.kind, info.value.name, info.value.namespace) == ("Service", "web", "demo")
    assert info.value.message == 'services "web" not found' and isinstance(info.value, ClusterError)


def test_403_and_401_quote_the_server(kube, api):
    message = 'pods is forbidden: User "system:serviceaccount:demo:nobody" cannot create resource "pods" in API group "" in the namespace "demo"'
    api.routes[("POST", "/api/v1/namespaces/demo/pods")] = (403, status(403, "Forbidden", message, kind="pods"))
    with pytest.raises(Forbidden) as info:
        kube.create_pod("demo", {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": []}})
    assert info.value.message == message and not info.value.pod_security
    api.routes[("GET", "/api/v1/nodes")] = (401, status(401, "Unauthorized", "Unauthorized"))
    with pytest.raises(Unauthorized, match="unauthorized: Unauthorized"):
        kube.nodes()


def test_pod_security_rejection_is_recognised(kube, api):
    message = 'pods "p" is forbidden: violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true)'
    api.routes[("POST", "/api/v1/namespaces/demo/pods")] = (403, status(403, "Forbidden", message))
    with pytest.raises(Forbidden) as info:
        kube.create_pod("demo", {"metadata": {"name": "p"}})
    assert info.value.pod_security


def test_unreachable_names_the_server(tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    kube = Kube.connect(kubeconfig(tmp_path / "config", f"http://127.0.0.1:{port}"))
    with pytest.raises(Unreachable, match=rf"cannot reach the API server at http://127.0.0.1:{port}: .*refused"):
        kube.pods("demo")


def test_reads_return_typed_objects_and_dicts(kube, api):
    pod = {"metadata": {"name": "web-1", "namespace": "demo", "labels": {"app": "web"},
                        "ownerReferences": [{"kind": "ReplicaSet", "name": "web-5d9", "controller": True}]},
           "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"containerPort": 80}],
                                                      "readinessProbe": {"httpGet": {"port": 80, "path": "/"}}}]},
           "status": {"phase": "Running", "podIP": "10.244.0.5", "conditions": [{"type": "Ready", "status": "True"}]}}
    api.routes[("GET", "/api/v1/namespaces/demo/pods")] = (200, {"items": [pod]})
    [got] = kube.pods("demo", label_selector="app=web")
    assert got.ready and got.owner_kind == "ReplicaSet" and got.container_ports[0].port == 80
    assert got.readiness_probes[0].kind == "httpGet"
    assert "labelSelector=app%3Dweb" in api.requests[-1][1]
    api.routes[("GET", "/apis/networking.k8s.io/v1/namespaces/demo/networkpolicies")] = (200, {"items": [{"metadata": {"name": "deny"}}]})
    assert kube.list_objects("NetworkPolicy", "demo") == [{"metadata": {"name": "deny"}, "kind": "NetworkPolicy", "apiVersion": "networking.k8s.io/v1"}]


def test_delete_uses_background_propagation_and_tolerates_gone(kube, api):
    api.routes[("DELETE", "/api/v1/namespaces/demo/configmaps/cm")] = (200, {})
    assert kube.delete("ConfigMap", "demo", "cm") is True
    assert api.requests[-1][2]["propagationPolicy"] == "Background"
    assert kube.delete("Pod", "demo", "gone") is False


EXIT_3 = b'{"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: command terminated with exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}}'
MISSING = b'{"metadata":{},"status":"Failure","message":"Internal error occurred: error executing command in container: failed to exec in container: failed to start exec: OCI runtime exec failed: exec failed: unable to start container process: exec: \\"nosuchcmd\\": executable file not found in $PATH: unknown","reason":"InternalError","details":{"causes":[{"message":"x"}]},"code":500}'


def test_exec_status_channel():
    assert parse_exec_status(b'{"metadata":{},"status":"Success"}') == (0, None)
    assert parse_exec_status(EXIT_3) == (3, None)
    code, error = parse_exec_status(MISSING)
    assert code is None and error.kind is ExecErrorKind.MISSING_BINARY and error.binary == "nosuchcmd"
    assert parse_exec_status(b"")[1].kind is ExecErrorKind.CONNECTION_LOST
    other = parse_exec_status(b'{"status":"Failure","message":"container not found (\\"x\\")","reason":"BadRequest"}')
    assert other[1].kind is ExecErrorKind.FAILURE and "container not found" in other[1].message


def test_importing_kube_does_not_import_kubernetes():
    code = "import sys, netdoctor.cluster.kube, netdoctor.probe.fleet; print('kubernetes' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
