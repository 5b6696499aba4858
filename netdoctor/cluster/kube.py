"""The only door to the Kubernetes API: connect, read, create/delete, exec. Nothing else imports
the `kubernetes` package.

Used by the check pipeline (resolve reads objects, `netdoctor.probe.fleet` creates pods, watches
them start and execs). Callers get `netdoctor.cluster.objects` types or API-shaped dicts, and
`netdoctor.errors` exceptions with one clear line: kubeconfig problems are UsageError, everything the
server or the network says is a ClusterError (typed: NotFound, Forbidden, Unauthorized,
AlreadyExists, Expired, Unreachable, Stalled), and so is an exec credential plugin (EKS's `aws`,
GKE's `gke-gcloud-auth-plugin`) that is missing or fails (CredentialPluginError), named as such.
Every call has a bounded time, the request timeout (`--request-timeout`): connecting, each read of
a REST answer, the exec handshake, and the silence allowed within a watch. No call is retried, so
the bound is the bound. `kubernetes` is imported lazily so that `netdoctor --help` never pays for it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shlex
import shutil
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Any, Callable, Iterator, Mapping, TypeVar

from netdoctor.cluster import REQUEST_TIMEOUT
from netdoctor.errors import ClusterError, Interrupted, UsageError
from netdoctor.cluster.objects import Deployment, EndpointSlice, Namespace, Node, Pod, Service
from netdoctor.observations import ExecError, ExecErrorKind, ExecResult

DEFAULT_NAMESPACE = "default"
PAGE = 500  # items per page of a list (limit/continue), kubectl's chunk size
# What a real API server answers with metadata only (PartialObjectMetadata), as kubectl and client-go ask for it.
METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
METADATA_OBJECT = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
STDIN, STDOUT, STDERR, STATUS = 0, 1, 2, 3  # exec channels
EXEC_SLICE = 0.1  # seconds an exec waits for output before it looks whether it should stop


class ApiError(ClusterError):
    """The API server answered with an error Status; `server_message` is its own words."""

    def __init__(self, message: str, *, status: int, reason: str = "", server_message: str = "", hint=None):
        super().__init__(message, hint=hint)
        self.status = status
        self.reason = reason
        self.server_message = server_message or message


class NotFound(ApiError):
    """404. The server does not say whether the namespace or the object is missing."""

    def __init__(self, kind: str, name: str, namespace: str | None, server_message: str):
        super().__init__(server_message, status=404, reason="NotFound", server_message=server_message)
        self.kind, self.name, self.namespace = kind, name, namespace


class Unauthorized(ApiError):
    """401: the credentials were rejected."""


class Forbidden(ApiError):
    """403: RBAC, or an admission plugin such as PodSecurity (see `pod_security`)."""

    @property
    def pod_security(self) -> bool:
        return "violates PodSecurity" in self.server_message


class AlreadyExists(ApiError):
    """409."""


class Expired(ApiError):
    """410: a watch's resourceVersion is older than the server's history; list again."""


class CredentialPluginError(ClusterError):
    """The kubeconfig user's exec credential plugin is not installed, or failed: no credentials."""


class Unreachable(ClusterError):
    """Connection refused, timeout, TLS failure: the API server could not be talked to."""


class Stalled(Unreachable):
    """The API server took a connection but did not answer within the request timeout."""


class WatchEventType(Enum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"
    BOOKMARK = "BOOKMARK"  # no change: the stream's resourceVersion moved on


@dataclass(frozen=True)
class WatchEvent:
    type: WatchEventType
    object: Mapping  # the API object; a BOOKMARK's carries only its metadata.resourceVersion

    @property
    def resource_version(self) -> str:
        return self.object["metadata"]["resourceVersion"]


@dataclass(frozen=True)
class Snapshot:
    """A list and the resourceVersion it is consistent with: where a watch starts so nothing is missed."""

    items: tuple[dict, ...]
    resource_version: str


@dataclass(frozen=True)
class _Kind:
    api_version: str  # "v1" or "group/version"
    plural: str  # the REST resource name
    namespaced: bool = True

    def path(self, namespace: str | None, name: str = "") -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        where = f"/namespaces/{namespace}" if self.namespaced and namespace else ""
        return f"{base}{where}/{self.plural}" + (f"/{name}" if name else "")


_KINDS = {
    "Namespace": _Kind("v1", "namespaces", namespaced=False),
    "Node": _Kind("v1", "nodes", namespaced=False),
    "Pod": _Kind("v1", "pods"),
    "Service": _Kind("v1", "services"),
    "ConfigMap": _Kind("v1", "configmaps"),
    "Job": _Kind("batch/v1", "jobs"),
    "EndpointSlice": _Kind("discovery.k8s.io/v1", "endpointslices"),
    "NetworkPolicy": _Kind("networking.k8s.io/v1", "networkpolicies"),
    "Deployment": _Kind("apps/v1", "deployments"),
    "ReplicaSet": _Kind("apps/v1", "replicasets"),
    "StatefulSet": _Kind("apps/v1", "statefulsets"),
    "DaemonSet": _Kind("apps/v1", "daemonsets"),
}


class Kube:
    """One cluster connection. Thread-safe: probes exec in parallel threads.

    Build it with `Kube.connect()`. `namespace` is the context's namespace (kubectl's default);
    `request_timeout` bounds every call (seconds).
    """

    def __init__(self, api_client: Any, namespace: str, *, request_timeout: float = REQUEST_TIMEOUT):
        self.namespace = namespace
        self.server = api_client.configuration.host
        self.request_timeout = request_timeout
        self._client = api_client
        self._stopping = threading.Event()
        self._read_lock = threading.Lock()
        self.bytes_read = 0  # bytes of REST answers read so far (benchmarks/scale.py prints it)
        self.requests = 0  # REST calls made so far

    @classmethod
    def connect(cls, kubeconfig: str | None = None, context: str | None = None, *, environ=None,
                request_timeout: float = REQUEST_TIMEOUT) -> Kube:
        """kubectl's rules: --kubeconfig, else every file of $KUBECONFIG (':'-joined), else
        ~/.kube/config, else the in-cluster service account; the context's namespace."""
        environ = os.environ if environ is None else environ
        paths = kubeconfig or environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
        if kubeconfig and not os.path.isfile(kubeconfig):
            raise UsageError(f"kubeconfig {kubeconfig}: no such file")
        if not any(os.path.isfile(p) for p in paths.split(os.pathsep) if p):
            if environ.get("KUBERNETES_SERVICE_HOST") and not context:
                return cls._in_cluster(request_timeout)
            raise UsageError(f"no kubeconfig found at {paths}", hint="pass --kubeconfig or set KUBECONFIG")
        return cls._from_kubeconfig(paths, context, request_timeout)

    @classmethod
    def _from_kubeconfig(cls, paths: str, context: str | None, request_timeout: float) -> Kube:
        from kubernetes import client, config
        from kubernetes.config.kube_config import KubeConfigMerger

        configuration = client.Configuration()
        try:
            merged = KubeConfigMerger(paths).config.value
            contexts = [getattr(node, "value", node) for node in merged.get("contexts") or []]
            chosen = _choose_context(contexts, merged.get("current-context"), context, paths)
            plugin = _exec_plugin(merged, chosen)
            with _logged_errors(plugin is not None) as errors:
                config.load_kube_config(config_file=paths, context=chosen["name"], client_configuration=configuration,
                                        persist_config=False)
        except UsageError:
            raise
        except Exception as exc:  # the loader raises ConfigException, YAML, OS and Key errors
            raise UsageError(f"kubeconfig {paths} is not usable: {_one_line(exc)}") from None
        if errors:
            raise _plugin_failure(plugin, errors)
        namespace = (chosen.get("context") or {}).get("namespace") or DEFAULT_NAMESPACE
        return cls(_api_client(configuration), namespace, request_timeout=request_timeout)

    @classmethod
    def _in_cluster(cls, request_timeout: float) -> Kube:
        from kubernetes import client, config

        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
            with open(os.path.join(SERVICE_ACCOUNT_DIR, "namespace")) as file:
                namespace = file.read().strip() or DEFAULT_NAMESPACE
        except (config.ConfigException, OSError) as exc:
            raise UsageError(f"no kubeconfig, and the in-cluster configuration is not usable: {exc}") from None
        return cls(_api_client(configuration), namespace, request_timeout=request_timeout)

    # ------------------------------------------------------------ reads

    def get_namespace(self, name: str) -> Namespace:
        return Namespace.from_api(self.get_object("Namespace", None, name))

    def nodes(self, label_selector: str | None = None, field_selector: str | None = None,
              first: int | None = None) -> list[Node]:
        """Every node the selectors match, page by page; `first`: only that many (one short list)."""
        return [Node.from_api(o) for o in self.list_objects("Node", None, label_selector, field_selector, first=first)]

    def node(self, name: str) -> Node:
        return Node.from_api(self.get_object("Node", None, name))

    def service(self, namespace: str, name: str) -> Service:
        return Service.from_api(self.get_object("Service", namespace, name))

    def pod(self, namespace: str, name: str) -> Pod:
        return Pod.from_api(self.get_object("Pod", namespace, name))

    def pods(self, namespace: str | None, label_selector: str | None = None, field_selector: str | None = None) -> list[Pod]:
        return [Pod.from_api(o) for o in self.list_objects("Pod", namespace, label_selector, field_selector)]

    def endpoint_slices(self, namespace: str, service: str) -> list[EndpointSlice]:
        objects = self.list_objects("EndpointSlice", namespace, f"kubernetes.io/service-name={service}")
        return [EndpointSlice.from_api(o) for o in objects]

    def deployment(self, namespace: str, name: str) -> Deployment:
        return Deployment.from_api(self.get_object("Deployment", namespace, name))

    def get_object(self, kind: str, namespace: str | None, name: str) -> dict:
        spec = _kind(kind)
        return _with_type(self._request(kind, name, namespace, "GET", spec.path(namespace, name)), kind, spec)

    def list_objects(
        self,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        *,
        first: int | None = None,
    ) -> list[dict]:
        """API-shaped dicts (with kind and apiVersion), from one namespace or from all (None), read
        in pages of PAGE (limit/continue: one consistent list, however large); `first`: stop
        after that many."""
        spec = _kind(kind)
        return [_with_type(item, kind, spec) for item in self._pages(kind, namespace, label_selector, field_selector,
                                                                      first, "application/json")]

    def list_metadata(self, kind: str, namespace: str | None = None, label_selector: str | None = None,
                      field_selector: str | None = None, *, first: int | None = None) -> list[dict]:
        """The objects' metadata only (name, namespace, labels, annotations, owners): the server
        sends a PartialObjectMetadataList, a fraction of the objects' size. Each dict carries the
        object's kind and apiVersion, and `metadata`."""
        spec = _kind(kind)
        return [{"kind": kind, "apiVersion": spec.api_version, "metadata": item.get("metadata") or {}}
                for item in self._pages(kind, namespace, label_selector, field_selector, first, METADATA_LIST)]

    def get_metadata(self, kind: str, namespace: str | None, name: str) -> dict:
        """One object's metadata only (a PartialObjectMetadata), as list_metadata shapes it."""
        spec = _kind(kind)
        data = self._request(kind, name, namespace, "GET", spec.path(namespace, name), accept=METADATA_OBJECT)
        return {"kind": kind, "apiVersion": spec.api_version, "metadata": data.get("metadata") or {}}

    def _pages(self, kind: str, namespace: str | None, label_selector: str | None, field_selector: str | None,
               first: int | None, accept: str) -> list[dict]:
        spec = _kind(kind)
        query = [(k, v) for k, v in (("labelSelector", label_selector), ("fieldSelector", field_selector)) if v]
        items: list[dict] = []
        token = ""
        while True:
            limit = PAGE if first is None else min(PAGE, first - len(items))
            page = query + [("limit", str(limit))] + ([("continue", token)] if token else [])
            try:
                data = self._request(kind, "", namespace, "GET", spec.path(namespace), query=page, accept=accept)
            except Expired:
                if not token:
                    raise
                # The list's resourceVersion was compacted away between pages: one list without
                # limit, consistent again (client-go's pager does the same).
                data = self._request(kind, "", namespace, "GET", spec.path(namespace), query=query, accept=accept)
                items = data.get("items") or []
                return items[:first] if first is not None else items
            items += data.get("items") or []
            token = (data.get("metadata") or {}).get("continue") or ""
            if not token or (first is not None and len(items) >= first):
                return items[:first] if first is not None else items

    def snapshot(self, kind: str, namespace: str | None, label_selector: str | None = None) -> Snapshot:
        """A list with its resourceVersion, to start a `watch` from."""
        spec = _kind(kind)
        query = [("labelSelector", label_selector)] if label_selector else []
        data = self._request(kind, "", namespace, "GET", spec.path(namespace), query=query)
        items = tuple(_with_type(item, kind, spec) for item in data.get("items") or [])
        return Snapshot(items, (data.get("metadata") or {}).get("resourceVersion") or "")

    def watch(self, kind: str, namespace: str | None, label_selector: str | None, resource_version: str) -> Iterator[WatchEvent]:
        """The changes after `resource_version`, as they happen, for about half the request timeout
        (the server then ends the watch: watch again from the last event's resourceVersion; the
        BOOKMARK events keep it current). Silence for the request timeout (at least the watch's
        own length + 1 s) is a stall, Stalled; a version the server no longer holds raises
        Expired: list again. Close the iterator to stop early."""
        spec = _kind(kind)
        seconds = max(1, math.ceil(self.request_timeout / 2))
        query = [("watch", "true"), ("resourceVersion", resource_version), ("allowWatchBookmarks", "true"),
                 ("timeoutSeconds", str(seconds))] + ([("labelSelector", label_selector)] if label_selector else [])
        response = self._send(kind, "", namespace, "GET", spec.path(namespace), query=query, stream=True,
                              timeout=max(self.request_timeout, seconds + 1.0))
        return self._events(response, kind, spec)

    def _events(self, response: Any, kind: str, spec: _Kind) -> Iterator[WatchEvent]:
        import urllib3

        try:
            for line in _lines(response.stream(amt=None, decode_content=True)):
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    raise _status_error(int(event["object"].get("code") or 500), event["object"], kind, "", None)
                yield WatchEvent(WatchEventType(event["type"]), _with_type(event["object"], kind, spec))
        except urllib3.exceptions.TimeoutError:
            raise self._stalled(f"watching {spec.plural}") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._unreachable(exc) from None
        finally:  # a watch left early has unread data: its connection can't be reused
            response.close()
            response.release_conn()

    # ------------------------------------------------------------ writes

    def create_config_map(self, namespace: str, body: Mapping) -> dict:
        return self._request("ConfigMap", _name(body), namespace, "POST", _KINDS["ConfigMap"].path(namespace),
                             body=dict(body))

    def create_job(self, namespace: str, body: Mapping) -> dict:
        return self._request("Job", _name(body), namespace, "POST", _KINDS["Job"].path(namespace), body=dict(body))

    def create_pod(self, namespace: str, body: Mapping) -> Pod:
        return Pod.from_api(self._request("Pod", _name(body), namespace, "POST", _KINDS["Pod"].path(namespace),
                                          body=dict(body)))

    def delete(self, kind: str, namespace: str | None, name: str, *, timeout: float | None = None) -> bool:
        """Delete with background propagation (dependents are garbage-collected); False if gone.
        `timeout` shortens the request timeout (the cleanup after Ctrl-C has little time)."""
        options = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Background"}
        try:
            self._request(kind, name, namespace, "DELETE", _kind(kind).path(namespace, name), body=options,
                          timeout=timeout)
        except NotFound:
            return False
        return True

    # ------------------------------------------------------------ exec

    def stop_execs(self) -> None:
        """Ctrl-C: every exec ends within EXEC_SLICE, whatever thread runs it, and none starts
        (so no thread waits out a hung API server). REST calls, the cleanup's deletes, go on."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        """Whether `stop_execs` was called: what waits on an exec's output stops waiting."""
        return self._stopping.is_set()

    def exec(self, namespace: str, pod: str, command: list[str], container: str | None = None, *, timeout: float) -> ExecResult:
        """Run a command to completion (or until `timeout` seconds), stdout/stderr as bytes."""
        stream = self.exec_stream(namespace, pod, command, container)
        deadline = time.monotonic() + timeout
        stdout = bytearray()
        try:
            while not stream.closed:
                if self._stopping.is_set():
                    return ExecResult(None, bytes(stdout), stream.stderr, ExecError(ExecErrorKind.FAILURE, "interrupted"))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    error = ExecError(ExecErrorKind.TIMEOUT, f"{command[0]} did not finish within {timeout:g}s")
                    return ExecResult(None, bytes(stdout), stream.stderr, error)
                stdout += stream.read(min(remaining, EXEC_SLICE))
            stdout += stream.read(0)
        finally:
            stream.close()
        return ExecResult(stream.returncode, bytes(stdout), stream.stderr, stream.error)

    def exec_stream(self, namespace: str, pod: str, command: list[str], container: str | None = None, *,
                    stdin: bool = False) -> ExecStream:
        """Start a command and hand back its streams, for long runs such as `tcpdump -w -`;
        with `stdin` the caller can write to the command (to tell it to stop, say)."""
        from kubernetes.client.exceptions import ApiException
        from kubernetes.stream.ws_client import websocket_call

        if self._stopping.is_set():
            raise Interrupted("interrupted")
        query = [("command", part) for part in command] + [("stdout", "true"), ("stderr", "true")]
        if stdin:
            query.append(("stdin", "true"))
        if container:
            query.append(("container", container))
        _, url, headers, _, _ = self._client.param_serialize(
            "GET", _KINDS["Pod"].path(namespace, pod) + "/exec", query_params=query, auth_settings=["BearerToken"])
        try:  # the websocket client has no handshake timeout: bound it from outside
            ws = _within(self.request_timeout, lambda: websocket_call(
                self._client.configuration, "GET", url, headers=headers, _preload_content=False, binary=True),
                discard=lambda late: late.close(timeout=0), stop=self._stopping)
        except TimeoutError:
            raise self._stalled(f"starting exec in pod {namespace}/{pod}") from None
        except ApiException as exc:  # the WebSocket handshake failed: exc.__context__ says how
            raise self._api_error(exc, "Pod", pod, namespace) from None
        ws.sock.settimeout(self.request_timeout)  # a frame that stops halfway is a stall, not a hang
        return ExecStream(ws, self._stopping)

    # ------------------------------------------------------------ plumbing

    def _request(self, kind: str, name: str, namespace: str | None, method: str, path: str,
                 query: list | None = None, body: Any = None, timeout: float | None = None,
                 accept: str = "application/json") -> dict:
        """One REST call through the official client; every failure becomes one of our errors."""
        import urllib3

        response = self._send(kind, name, namespace, method, path, query, body, timeout=timeout, accept=accept)
        try:
            data = response.read()
        except urllib3.exceptions.TimeoutError:
            raise self._stalled(f"{method} {path}", timeout) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._unreachable(exc) from None
        with self._read_lock:
            self.bytes_read += len(data or b"")
            self.requests += 1
        return json.loads(data or b"{}")

    def _send(self, kind: str, name: str, namespace: str | None, method: str, path: str, query: list | None = None,
              body: Any = None, *, timeout: float | None = None, stream: bool = False,
              accept: str = "application/json") -> Any:
        """Send one request and read its status; an error status becomes one of our errors. The
        body is left to read: at once (`_request`) or as it streams (`watch`)."""
        import urllib3

        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = "application/json"
        method, url, headers, body, post = self._client.param_serialize(
            method, path, query_params=query or [], header_params=headers, body=body, auth_settings=["BearerToken"])
        try:
            response = self._client.call_api(method, url, header_params=headers, body=body, post_params=post,
                                             _request_timeout=timeout or self.request_timeout)
            if not 200 <= response.status < 300:
                raise _status_error(response.status, _body(response.read()), kind, name, namespace)
        except urllib3.exceptions.NewConnectionError as exc:  # a subclass of urllib3's TimeoutError
            raise self._unreachable(exc) from None
        except urllib3.exceptions.TimeoutError:
            raise self._stalled(f"{method} {path}", timeout) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._unreachable(exc) from None
        return response.response if stream else response

    def _api_error(self, exc, kind: str, name: str, namespace: str | None) -> Exception:
        if exc.status:
            return _status_error(exc.status, _body(exc.body), kind, name, namespace)
        cause = exc.__context__  # stream(): the WebSocket failure, wrapped in ApiException(status=0)
        if isinstance(cause, KeyboardInterrupt):
            return cause
        status = getattr(cause, "status_code", None)
        if status:
            return _status_error(status, _body(getattr(cause, "resp_body", b"")), kind, name, namespace)
        return self._unreachable(cause or exc)

    def _unreachable(self, exc: BaseException) -> Unreachable:
        return Unreachable(f"cannot reach the API server at {self.server}: {_one_line(getattr(exc, 'reason', None) or exc)}")

    def _stalled(self, what: str, timeout: float | None = None) -> Stalled:
        return Stalled(f"the API server at {self.server} did not answer within {timeout or self.request_timeout:g}s "
                       f"({what})", hint="it is overloaded or hung; try again, or give it longer with --request-timeout")


class ExecStream:
    """A running exec: `read(timeout)` returns the stdout bytes that arrived, `stderr` what the
    command wrote there so far; `returncode`/`error` are known once `closed`. One thread reads;
    `write` and `close_stdin` may come from others (the websocket client locks sends apart from reads)."""

    def __init__(self, ws: Any, stopping: threading.Event | None = None):
        self._ws = ws
        self._stopping = stopping or threading.Event()
        self._stderr = bytearray()
        self._lost: ExecError | None = None
        self._closed_by_us = False
        self._status: tuple[int | None, ExecError | None] | None = None

    def read(self, timeout: float) -> bytes:
        from websocket import WebSocketException

        try:
            if self._ws.is_open():
                self._ws.update(timeout=max(timeout, 0))
        except (WebSocketException, OSError) as exc:
            self._ws.close()
            self._lost = ExecError(ExecErrorKind.CONNECTION_LOST, f"exec stream broke: {_one_line(exc)}")
        self._stderr += self._ws.read_channel(STDERR)
        return self._ws.read_channel(STDOUT)

    def write(self, data: bytes) -> None:
        """Send bytes to the command's stdin (the stream must have been opened with stdin)."""
        from websocket import WebSocketException

        try:
            self._ws.write_stdin(data)
        except (WebSocketException, OSError) as exc:
            self._ws.close()
            self._lost = ExecError(ExecErrorKind.CONNECTION_LOST, f"exec stream broke: {_one_line(exc)}")

    def close_stdin(self) -> None:
        """End the command's input (EOF), where the server speaks the v5 protocol that can say so."""
        from websocket import WebSocketException

        try:
            self._ws.close_channel(STDIN)
        except (WebSocketException, OSError) as exc:
            self._ws.close()
            self._lost = ExecError(ExecErrorKind.CONNECTION_LOST, f"exec stream broke: {_one_line(exc)}")

    @property
    def closed(self) -> bool:
        return not self._ws.is_open()

    @property
    def stderr(self) -> bytes:
        return bytes(self._stderr)

    @property
    def returncode(self) -> int | None:
        return self._final()[0]

    @property
    def error(self) -> ExecError | None:
        return self._final()[1]

    def close(self) -> None:
        """Close (after Ctrl-C without waiting for the server's goodbye: it may be hung)."""
        if not self.closed:
            self._closed_by_us = True
            self._ws.close(**({"timeout": 0} if self._stopping.is_set() else {}))

    def __enter__(self) -> ExecStream:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _final(self) -> tuple[int | None, ExecError | None]:
        if not self.closed:
            return None, None
        if self._status is None:  # the status channel is read exactly once
            raw = self._ws.read_channel(STATUS)
            if self._lost and not raw:
                self._status = (None, self._lost)
            elif self._closed_by_us and not raw:
                self._status = (None, None)
            else:
                self._status = parse_exec_status(raw)
        return self._status


def parse_exec_status(raw: bytes | str) -> tuple[int | None, ExecError | None]:
    """The exit code, or the failure, from the exec status channel (a metav1.Status JSON)."""
    if not raw:
        return None, ExecError(ExecErrorKind.CONNECTION_LOST, "the exec stream closed without an exit status")
    try:
        status = json.loads(raw)
    except ValueError:
        return None, ExecError(ExecErrorKind.FAILURE, f"unreadable exec status: {_one_line(raw)}")
    if status.get("status") == "Success":
        return 0, None
    message = status.get("message") or ""
    causes = (status.get("details") or {}).get("causes") or []
    if status.get("reason") == "NonZeroExitCode":
        code = next((c.get("message") for c in causes if c.get("reason") == "ExitCode"), None)
        if code is not None and str(code).isdigit():
            return int(code), None
    if "executable file not found" in message or "no such file or directory" in message:
        binary = re.search(r'exec: "([^"]+)"', message)
        return None, ExecError(ExecErrorKind.MISSING_BINARY, message, binary[1] if binary else None)
    return None, ExecError(ExecErrorKind.FAILURE, message or _one_line(raw))


def _api_client(configuration: Any) -> Any:
    """The official client, without urllib3's retries: they would multiply the request timeout."""
    from kubernetes import client

    configuration.retries = False
    return client.ApiClient(configuration=configuration)


_T = TypeVar("_T")


def _within(seconds: float, start: Callable[[], _T], *, discard: Callable[[_T], None], stop: threading.Event) -> _T:
    """start() in a helper thread, waited for `seconds`; TimeoutError if it is late, Interrupted
    once `stop` is set. A late result is handed to `discard` when it finally comes."""
    outcome: dict[str, Any] = {}
    lock, done = threading.Lock(), threading.Event()

    def run() -> None:
        try:
            value = start()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller, raised there
            value, outcome["error"] = None, exc
        with lock:
            abandoned = "abandoned" in outcome
            outcome["value"] = value
        if abandoned and "error" not in outcome:
            discard(value)
        done.set()

    threading.Thread(target=run, name="kube-connect", daemon=True).start()
    deadline = time.monotonic() + seconds
    while not done.wait(min(EXEC_SLICE, max(0.0, deadline - time.monotonic()))):
        if stop.is_set() or time.monotonic() >= deadline:
            with lock:
                if "value" not in outcome:
                    outcome["abandoned"] = True
                    raise Interrupted("interrupted") if stop.is_set() else TimeoutError(f"no answer within {seconds:g}s")
    done.wait()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _lines(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Whole lines from a byte stream (a watch sends one JSON event per line)."""
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        yield from (line for line in lines if line.strip())
    if pending.strip():
        yield pending


def _exec_plugin(merged: Mapping, chosen: Mapping) -> Mapping | None:
    """The chosen context's user's `exec` credential plugin, if it has one."""
    user = (chosen.get("context") or {}).get("user")
    users = [getattr(node, "value", node) for node in merged.get("users") or []]
    entry = next((u for u in users if u.get("name") == user), None) or {}
    plugin = (entry.get("user") or {}).get("exec")
    return getattr(plugin, "value", plugin) if plugin else None


@contextmanager
def _logged_errors(capture: bool) -> Iterator[list[str]]:
    """With `capture`, the root logger's records during the block, kept from every handler: the
    client's kubeconfig loader reports a failed exec credential plugin only with logging.error
    (which would print a stray `ERROR:root:` line, and install a stderr handler for good) and goes
    on without credentials. The caller turns them into one error."""
    records: list[str] = []
    if not capture:
        yield records
        return

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    root = logging.getLogger()
    saved, root.handlers = root.handlers, [Keep(logging.ERROR)]
    try:
        yield records
    finally:
        root.handlers = saved


_PLUGIN_EXIT = re.compile(r"exec: process returned (-?\d+)(?:\. (.*))?", re.S)
_PLUGIN_HINTS = {
    "aws": "install the AWS CLI (the kubeconfig runs 'aws eks get-token'), or regenerate the kubeconfig with "
           "'aws eks update-kubeconfig'",
    "gke-gcloud-auth-plugin": "install it: gcloud components install gke-gcloud-auth-plugin",
    "kubelogin": "install kubelogin (Azure: az aks install-cli)",
}


def _plugin_failure(plugin: Mapping, errors: list[str]) -> CredentialPluginError:
    """One line naming the exec credential plugin and what went wrong with it."""
    command = str(plugin.get("command") or "")
    name = os.path.basename(command)
    exited = next((m for m in map(_PLUGIN_EXIT.search, errors) if m), None)
    if shutil.which(command) is None:
        return CredentialPluginError(f"the kubeconfig's credential plugin {name!r} is not installed (no {command} "
                                     f"on PATH)", hint=_PLUGIN_HINTS.get(name, f"install {name}, or put it on PATH"))
    if exited:
        said = f": {_one_line(exited[2])}" if exited[2] else " (it wrote nothing on stderr)"
        return CredentialPluginError(f"the kubeconfig's credential plugin {name!r} exited {exited[1]}{said}",
                                     hint=f"run {shlex.join([command, *map(str, plugin.get('args') or [])])} "
                                          f"to see it fail")
    return CredentialPluginError(f"the kubeconfig's credential plugin {name!r} failed: {_one_line(errors[0])}")


def _choose_context(contexts: list[dict], current: str | None, wanted: str | None, paths: str) -> dict:
    if not (wanted or current):
        raise UsageError(f"kubeconfig {paths} has no current-context", hint="pass --context")
    match = next((c for c in contexts if c.get("name") == (wanted or current)), None)
    if match is None:
        known = ", ".join(sorted(c.get("name", "") for c in contexts)) or "none"
        raise UsageError(f"context {wanted or current!r} is not in kubeconfig {paths} (known: {known})")
    return match


def _status_error(status: int, body: Mapping, kind: str, name: str, namespace: str | None) -> ApiError:
    message = body.get("message") or f"HTTP {status}"
    reason = body.get("reason") or ""
    if status == 404:
        return NotFound(kind, name, namespace, message)
    if status == 401:
        return Unauthorized(f"unauthorized: {message}", status=401, reason=reason, server_message=message,
                            hint="your credentials were rejected; check the kubeconfig user")
    if status == 403:
        return Forbidden(message, status=403, reason=reason, server_message=message)
    if status == 409:
        return AlreadyExists(message, status=409, reason=reason, server_message=message)
    if status == 410:
        return Expired(message, status=410, reason=reason, server_message=message)
    return ApiError(f"the API server refused: {message}", status=status, reason=reason, server_message=message)


def _kind(kind: str) -> _Kind:
    try:
        return _KINDS[kind]
    except KeyError:
        raise ValueError(f"unsupported kind {kind!r}; known: {', '.join(_KINDS)}") from None


def _with_type(obj: dict, kind: str, spec: _Kind) -> dict:
    obj.setdefault("kind", kind)
    obj.setdefault("apiVersion", spec.api_version)
    return obj


def _body(raw: bytes | str | None) -> dict:
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        return {"message": _one_line(raw)} if raw else {}
    return body if isinstance(body, dict) else {}


def _name(body: Mapping) -> str:
    return (body.get("metadata") or {}).get("name", "")


def _one_line(value: Any) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    text = re.sub(r"<[\w.]+ object at 0x[0-9a-f]+>: ", "", text)  # urllib3's connection reprs
    return " ".join(text.split())[:300]
