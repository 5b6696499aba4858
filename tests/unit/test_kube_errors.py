"""Kube: kubeconfig rules, error mapping, bounded calls and watch, against real local HTTP servers
(no client mocks): one that answers, one that never does, one that streams a watch."""

import json
import socket
import sys
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from netdoctor.errors import ClusterError, Interrupted, UsageError
from netdoctor.cluster.kube import (
    Expired, Forbidden, Kube, NotFound, Stalled, Unauthorized, Unreachable, WatchEventType, parse_exec_status,
)
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


class SilentServer:
    """Accepts connections and never answers: an API server that hangs (SIGSTOPped, overloaded)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self):
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent():
    server = SilentServer()
    yield server
    server.close()


def timed(call):
    started = time.monotonic()
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the test looks at which
        return exc, time.monotonic() - started
    raise AssertionError("the call returned")


def test_a_hung_api_server_is_a_clear_error_within_the_request_timeout(silent, tmp_path):
    kube = Kube.connect(kubeconfig(tmp_path / "config", silent.url), request_timeout=0.5)
    error, took = timed(lambda: kube.pods("demo"))
    assert isinstance(error, Stalled) and isinstance(error, ClusterError) and 0.4 < took < 1.5
    assert error.message == (f"the API server at {silent.url} did not answer within 0.5s "
                             "(GET /api/v1/namespaces/demo/pods)")
    assert "--request-timeout" in error.hint
    assert len(silent.accepted) == 1  # not retried: the timeout is the bound


def test_every_kind_of_call_is_bounded(silent, tmp_path):
    kube = Kube.connect(kubeconfig(tmp_path / "config", silent.url), request_timeout=0.5)
    for call, bound in ((lambda: kube.create_pod("demo", {"metadata": {"name": "p"}}), 0.5),
                        (lambda: kube.snapshot("Pod", "demo", "a=b"), 0.5),
                        (lambda: kube.watch("Pod", "demo", "a=b", "7"), 2.0),  # its 1 s timeoutSeconds, + 1 s
                        (lambda: kube.exec("demo", "p", ["true"], timeout=5), 0.5)):
        error, took = timed(call)
        assert isinstance(error, Stalled) and bound - 0.1 < took < bound + 0.5, (error, took)
    error, took = timed(lambda: kube.delete("Pod", "demo", "p", timeout=0.2))
    assert isinstance(error, Stalled) and took < 0.6 and "within 0.2s" in error.message


def test_stop_execs_ends_an_exec_handshake_at_once(silent, tmp_path):
    kube = Kube.connect(kubeconfig(tmp_path / "config", silent.url), request_timeout=30)
    threading.Timer(0.2, kube.stop_execs).start()
    error, took = timed(lambda: kube.exec("demo", "p", ["true"], timeout=5))
    assert isinstance(error, Interrupted) and took < 1.0
    error, took = timed(lambda: kube.exec("demo", "p", ["true"], timeout=5))
    assert isinstance(error, Interrupted) and took < 0.1  # none starts after


class WatchServer:
    """Serves `?watch=true` on the pods of namespace demo as a chunked stream of the given lines,
    then ends the watch or, with `hang`, stays silent; records each request's query."""

    def __init__(self, lines: list[bytes], status: int = 200, hang: bool = False):
        self.queries: list[dict] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                server.queries.append(parse_qs(urlsplit(self.path).query))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                for line in lines:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                    self.wfile.flush()
                if hang:
                    time.sleep(3)
                self.wfile.write(b"0\r\n\r\n")

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def event(kind: str, name: str, version: int) -> bytes:
    obj = {"metadata": {"name": name, "namespace": "demo", "resourceVersion": str(version)}}
    return json.dumps({"type": kind, "object": obj}).encode() + b"\n"


def test_watch_streams_typed_events_from_a_resource_version(tmp_path):
    bookmark = json.dumps({"type": "BOOKMARK", "object": {"kind": "Pod", "apiVersion": "v1",
                                                           "metadata": {"resourceVersion": "12"}}}).encode() + b"\n"
    server = WatchServer([event("ADDED", "p", 10), event("MODIFIED", "p", 11)[:20], event("MODIFIED", "p", 11)[20:],
                          bookmark])
    try:
        kube = Kube.connect(kubeconfig(tmp_path / "config", server.url), request_timeout=10)
        events = list(kube.watch("Pod", "demo", "netdoctor.io/run=abc", "9"))
    finally:
        server.close()
    assert [(e.type, e.resource_version) for e in events] == [
        (WatchEventType.ADDED, "10"), (WatchEventType.MODIFIED, "11"), (WatchEventType.BOOKMARK, "12")]
    assert events[0].object["kind"] == "Pod" and events[0].object["metadata"]["name"] == "p"
    [query] = server.queries
    assert query == {"watch": ["true"], "resourceVersion": ["9"], "allowWatchBookmarks": ["true"],
                     "timeoutSeconds": ["5"], "labelSelector": ["netdoctor.io/run=abc"]}


def test_an_expired_resource_version_is_typed(tmp_path):
    gone = {"type": "ERROR", "object": status(410, "Expired", "too old resource version: 9 (20)")}
    for server in (WatchServer([json.dumps(gone).encode() + b"\n"]),
                   WatchServer([json.dumps(status(410, "Gone", "too old")).encode()], status=410)):
        try:
            kube = Kube.connect(kubeconfig(tmp_path / "config", server.url), request_timeout=10)
            with pytest.raises(Expired):
                list(kube.watch("Pod", "demo", None, "9"))
        finally:
            server.close()


def test_a_watch_that_goes_silent_is_a_stall(tmp_path):
    server = WatchServer([event("ADDED", "p", 10)], hang=True)
    try:
        kube = Kube.connect(kubeconfig(tmp_path / "config", server.url), request_timeout=1)
        events = kube.watch("Pod", "demo", None, "9")
        assert next(events).resource_version == "10"
        error, took = timed(lambda: next(events))
    finally:
        server.close()
    assert isinstance(error, Stalled) and "watching pods" in error.message and took < 2.5


def test_request_timeout_option_bounds_the_commands_calls(silent, tmp_path):
    from io import StringIO

    from netdoctor.cli import main
    from netdoctor.environment import Environment
    from netdoctor.exitcodes import ExitCode

    config = kubeconfig(tmp_path / "config", silent.url)

    def run(*argv):
        err = StringIO()
        started = time.monotonic()
        code = main([*argv, "--kubeconfig", config], Environment(stdout=StringIO(), stderr=err))
        return code, err.getvalue(), time.monotonic() - started

    code, err, took = run("cleanup", "-n", "demo", "--request-timeout", "500ms")
    assert code == ExitCode.CLUSTER and took < 1.5
    assert err.startswith(f"error: the API server at {silent.url} did not answer within 0.5s (GET ")
    for bad in ("0", "-1", "inf", "soon", "1d"):
        code, err, _ = run("check", "svc/web", "--request-timeout", bad)
        assert code == ExitCode.USAGE and "--request-timeout" in err, (bad, err)
    code, err, _ = run("cleanup", "--run", "a b")
    assert code == ExitCode.USAGE and "is not a run ID" in err
