"""Turns one authenticated HTTP request into store calls and a reply (JSON, log text, watch, exec).

The server's request handler parses HTTP and calls `Routes.handle()`; everything Kubernetes-shaped
lives here: discovery documents, path parsing, verbs, selectors, pagination (limit/continue),
metadata-only answers (PartialObjectMetadata, asked for in the Accept header), DeleteOptions,
subresources and the checks before an exec upgrade. Every failure is an ApiError carrying the real Status.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import parse_qs, urlsplit

from netdoctor.lab.api import auth
from netdoctor.lab.api import patch as patches
from netdoctor.lab.api.resources import RESOURCES, ResourceType, groups, lookup
from netdoctor.lab.api.status import ApiError, bad_request, success
from netdoctor.lab.api.store import Store
from netdoctor.lab.api.watch import WatchHub

VERSION = {
    "major": "1", "minor": "36", "gitVersion": "v1.36.2-netdoctor-lab", "gitCommit": "", "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.25", "compiler": "gc", "platform": "linux/amd64",
}
PUBLIC_PATHS = frozenset({"/version", "/healthz", "/readyz", "/livez"})
DEFAULT_WATCH_SECONDS = 1800
_SUBRESOURCE_VERBS = {
    "status": ("get", "patch", "update"),
    "ephemeralcontainers": ("get", "patch", "update"),
    "log": ("get",),
    "exec": ("create", "get"),
    "attach": ("create", "get"),
}
_SUBRESOURCE_KINDS = {"exec": "PodExecOptions", "attach": "PodAttachOptions"}
META_V1 = "meta.k8s.io/v1"
_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


class Runtime(Protocol):
    """The lab's pod runtime, as the API server needs it."""

    def exec(self, pod: dict, container: str | None, command: list[str], stdin: bool, tty: bool): ...

    def log_path(self, pod: dict, container: str | None) -> str | None: ...


@dataclass(frozen=True)
class Request:
    method: str
    target: str  # path and query string
    headers: Mapping[str, str]  # case-insensitive lookups (http.client.HTTPMessage)
    body: bytes = b""

    @property
    def path(self) -> str:
        return urlsplit(self.target).path.rstrip("/") or "/"

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query)

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def flag(self, name: str) -> bool:
        return (self.param(name) or "").lower() in ("true", "1")

    def json(self):
        if not self.body:
            raise bad_request("the request body is empty")
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise bad_request(f"couldn't get version/kind; json parse error: {exc}") from None


@dataclass
class Reply:
    code: int
    body: dict | bytes
    content_type: str = "application/json"


@dataclass
class WatchReply:
    events: Iterator[dict]


@dataclass
class ExecReply:
    """Checks passed: the server upgrades the connection and runs `start()` over it."""

    start: Callable
    binary: str
    channels: frozenset[int] = field(default_factory=frozenset)


@dataclass(frozen=True)
class Target:
    rtype: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None


class Routes:
    def __init__(self, store: Store, runtime: Runtime, hub: WatchHub, address: str):
        self._store = store
        self._runtime = runtime
        self._hub = hub
        self._address = address

    def handle(self, request: Request, user: str | None) -> Reply | WatchReply | ExecReply:
        """user is None only for the public paths."""
        path = request.path
        if path in PUBLIC_PATHS:
            return Reply(200, VERSION) if path == "/version" else Reply(200, b"ok", "text/plain")
        discovery = self._discovery(path)
        if discovery is not None:
            return Reply(200, discovery)
        target = parse_target(path)
        verb = _verb(request, target)
        auth.authorize(user, verb, target.rtype.plural, target.rtype.group, target.namespace,
                       target.name, target.subresource)
        return self._dispatch(request, target, verb)

    # --- discovery -----------------------------------------------------------------------------

    def _discovery(self, path: str) -> dict | None:
        if path == "/api":
            return {"kind": "APIVersions", "versions": ["v1"],
                    "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": self._address}]}
        if path == "/apis":
            return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group(g, v) for g, v in sorted(groups().items())]}
        if path == "/api/v1":
            return _resource_list("", "v1")
        parts = path.strip("/").split("/")
        if len(parts) == 3 and parts[0] == "apis" and groups().get(parts[1]) == parts[2]:
            return _resource_list(parts[1], parts[2])
        if len(parts) == 2 and parts[0] == "apis" and parts[1] in groups():
            return {"kind": "APIGroup", "apiVersion": "v1", **_group(parts[1], groups()[parts[1]])}
        return None

    # --- verbs ---------------------------------------------------------------------------------

    def _dispatch(self, request: Request, target: Target, verb: str) -> Reply | WatchReply | ExecReply:
        if target.subresource:
            return self._subresource(request, target, verb)
        rtype, ns, name = target.rtype, target.namespace, target.name
        if verb == "list":
            metadata_only = _metadata_only(request, "PartialObjectMetadataList")
            listed = self._store.page(rtype.plural, ns, request.param("labelSelector"), request.param("fieldSelector"),
                                      _limit(request), request.param("continue"))
            if metadata_only:
                return Reply(200, {"kind": "PartialObjectMetadataList", "apiVersion": META_V1, **listed,
                                   "items": [_partial(o) for o in listed["items"]]})
            return Reply(200, {"kind": f"{rtype.kind}List", "apiVersion": rtype.api_version, **listed})
        if verb == "watch":
            return self._watch(request, target)
        if verb == "get":
            obj = self._store.get(rtype.plural, ns, name)
            return Reply(200, _partial(obj) if _metadata_only(request, "PartialObjectMetadata") else obj)
        if verb == "create":
            dry_run = _dry_run(request)
            return Reply(201, self._store.create(rtype.plural, request.json(), ns, dry_run=dry_run))
        _refuse_dry_run(request)
        if verb == "update":
            return Reply(200, self._store.replace(rtype.plural, ns, name, request.json()))
        if verb == "patch":
            return Reply(200, self._store.patch(rtype.plural, ns, name, request.json(), _patch_type(request)))
        if verb == "delete":
            return self._delete(request, target)
        return self._delete_collection(request, target)

    def _watch(self, request: Request, target: Target) -> WatchReply:
        rtype = target.rtype
        match = self._store.matcher(rtype.plural, request.param("labelSelector"), request.param("fieldSelector"))
        seconds = int(request.param("timeoutSeconds") or DEFAULT_WATCH_SECONDS)

        def bookmark(version: int) -> dict:  # only the resourceVersion the stream has reached
            return {"kind": rtype.kind, "apiVersion": rtype.api_version, "metadata": {"resourceVersion": str(version)}}

        events = self._hub.stream(rtype.plural, target.namespace, match, request.param("resourceVersion"),
                                  time.monotonic() + seconds, bookmark if request.flag("allowWatchBookmarks") else None)
        return WatchReply(events)

    def _delete(self, request: Request, target: Target) -> Reply:
        options = request.json() if request.body else {}
        propagation = (request.param("propagationPolicy") or options.get("propagationPolicy")
                       or target.rtype.default_propagation)
        if options.get("orphanDependents") is True:
            propagation = "Orphan"
        grace = _grace_seconds(request.param("gracePeriodSeconds"), options.get("gracePeriodSeconds"))
        deleted = self._store.delete(target.rtype.plural, target.namespace, target.name, propagation, grace)
        if target.rtype.plural in ("pods", "namespaces", "services"):
            return Reply(200, deleted)
        meta = deleted["metadata"]
        details = {"name": meta["name"], **({"group": target.rtype.group} if target.rtype.group else {}),
                   "kind": target.rtype.plural, "uid": meta["uid"]}
        return Reply(200, success(details))

    def _delete_collection(self, request: Request, target: Target) -> Reply:
        rtype = target.rtype
        items = self._store.list(rtype.plural, target.namespace, request.param("labelSelector"),
                                 request.param("fieldSelector"))
        deleted = []
        for item in items:
            meta = item["metadata"]
            try:
                deleted.append(self._store.delete(rtype.plural, meta.get("namespace"), meta["name"]))
            except ApiError as exc:
                if exc.code != 404:  # already gone (garbage-collected by an earlier delete) is fine
                    raise
        return Reply(200, {"kind": f"{rtype.kind}List", "apiVersion": rtype.api_version,
                           "metadata": {"resourceVersion": str(self._store.resource_version())}, "items": deleted})

    # --- subresources --------------------------------------------------------------------------

    def _subresource(self, request: Request, target: Target, verb: str) -> Reply | ExecReply:
        rtype, ns, name, sub = target.rtype, target.namespace, target.name, target.subresource
        if sub in ("exec", "attach"):
            return self._exec(request, target)
        if sub == "log":
            return self._log(request, target)
        if verb == "get":
            return Reply(200, self._store.get(rtype.plural, ns, name))
        _refuse_dry_run(request)
        if verb == "update":
            body = request.json()
            if sub == "status":
                return Reply(200, self._store.update_status(rtype.plural, ns, name, body.get("status") or {}))
            return Reply(200, self._store.update_ephemeral_containers(ns, name, _ephemeral(body)))
        patched = patches.apply(self._store.get(rtype.plural, ns, name), request.json(), _patch_type(request))
        if sub == "status":
            return Reply(200, self._store.update_status(rtype.plural, ns, name, patched.get("status") or {}))
        return Reply(200, self._store.update_ephemeral_containers(ns, name, _ephemeral(patched)))

    def _log(self, request: Request, target: Target) -> Reply:
        pod = self._store.get("pods", target.namespace, target.name)
        container = _container(pod, request.param("container"))
        path = self._runtime.log_path(pod, container)
        if path is None:
            raise bad_request(f'container "{container}" in pod "{target.name}" is waiting to start: ContainerCreating')
        with open(path, "rb") as handle:
            data = handle.read()
        tail = request.param("tailLines")
        if tail is not None:
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-int(tail):] if int(tail) else [])
        return Reply(200, data, "text/plain")

    def _exec(self, request: Request, target: Target) -> ExecReply:
        pod = self._store.get("pods", target.namespace, target.name)
        container = _container(pod, request.param("container"))
        _require_running(pod, container)
        command = request.query.get("command") or []
        if target.subresource == "exec" and not command:
            raise bad_request("you must specify at least 1 command")
        if "websocket" not in (request.headers.get("Upgrade") or "").lower():
            raise bad_request("Upgrade request required")
        stdin, tty = request.flag("stdin"), request.flag("tty")
        channels = frozenset(ch for ch, on in ((1, request.flag("stdout")), (2, request.flag("stderr"))) if on)
        start = functools.partial(self._runtime.exec, pod, container, command, stdin, tty)
        return ExecReply(start, command[0] if command else "", channels)


def parse_target(path: str) -> Target:
    """An API path as (resource type, namespace, name, subresource); 404 for anything else."""
    parts = path.strip("/").split("/")
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif parts[0] == "apis" and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise _unknown_path()
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    rtype = lookup(group, version, rest[0]) if rest else None
    if rtype is None or len(rest) > 3 or (namespace is not None and not rtype.namespaced):
        raise _unknown_path()
    name = rest[1] if len(rest) > 1 else None
    subresource = rest[2] if len(rest) > 2 else None
    if subresource is not None and subresource not in rtype.subresources:
        raise _unknown_path()
    if name is not None and rtype.namespaced and namespace is None:
        raise _unknown_path()
    return Target(rtype, namespace, name, subresource)


def _unknown_path() -> ApiError:
    return ApiError(404, "the server could not find the requested resource", details={})


def _verb(request: Request, target: Target) -> str:
    if target.subresource in ("exec", "attach"):
        return "create"  # what RBAC checks for a WebSocket exec, whatever the HTTP method
    if request.method == "GET":
        if target.name is None:
            return "watch" if request.flag("watch") else "list"
        return "get"
    if target.name is None:
        verb = {"POST": "create", "DELETE": "deletecollection"}.get(request.method)
    else:
        verb = {"PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(request.method)
    if verb is None or (target.subresource and verb not in _SUBRESOURCE_VERBS[target.subresource]):
        raise ApiError(405, "the server does not allow this method on the requested resource", details={})
    return verb


def _metadata_only(request: Request, kind: str) -> bool:
    """Whether the Accept header asks for metadata only (`as=PartialObjectMetadataList;g=meta.k8s.io;
    v=v1` for a list, `as=PartialObjectMetadata` for one object), as client-go and kubectl ask:
    the first media type the server can send wins; none it can send is 406, as a real server says."""
    accept = request.headers.get("Accept") or "application/json"
    for media in accept.split(","):
        kind_of, *params = [part.strip() for part in media.split(";")]
        options = dict(p.split("=", 1) for p in params if "=" in p)
        wanted = options.get("as")
        if kind_of not in ("application/json", "application/*", "*/*"):
            continue
        if wanted is None:
            return False
        if wanted == kind and options.get("g") == "meta.k8s.io" and options.get("v") in ("v1", "v1beta1"):
            return True
    raise ApiError(406, f"only the following media types are accepted: application/json, "
                        f"application/json;as={kind};g=meta.k8s.io;v=v1", reason="NotAcceptable", details={})


def _partial(obj: dict) -> dict:
    return {"kind": "PartialObjectMetadata", "apiVersion": META_V1, "metadata": obj.get("metadata") or {}}


def _limit(request: Request) -> int:
    value = request.param("limit") or "0"
    if not value.isdigit():
        raise bad_request(f"limit: Invalid value: {value!r}: must be a non-negative integer")
    return int(value)


def _patch_type(request: Request) -> str:
    kind = (request.headers.get("Content-Type") or "").split(";")[0].strip()
    if kind not in patches.PATCH_TYPES:
        raise ApiError(415, f"the body of the request was in an unknown format - accepted media types include: "
                            f"{', '.join(patches.PATCH_TYPES)}", details={})
    return kind


def _grace_seconds(param: str | None, option) -> int | None:
    """DeleteOptions.gracePeriodSeconds from the query or the body; negative means 1, as for pods."""
    value = param if param is not None else option
    if value is None:
        return None
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        raise bad_request(f"gracePeriodSeconds: Invalid value: {value!r}: must be an integer") from None
    return 1 if seconds < 0 else seconds


def _dry_run(request: Request) -> bool:
    values = request.query.get("dryRun") or []
    if any(v != "All" for v in values):
        raise bad_request(f"unsupported dry run value: {values}")
    return bool(values)


def _refuse_dry_run(request: Request) -> None:
    if request.query.get("dryRun"):
        raise bad_request("the lab API server supports dryRun only on create")


def _ephemeral(pod: dict) -> list[dict]:
    return (pod.get("spec") or {}).get("ephemeralContainers") or []


def _container(pod: dict, requested: str | None) -> str:
    spec, name = pod["spec"], pod["metadata"]["name"]
    names = [c["name"] for key in ("containers", "initContainers", "ephemeralContainers") for c in spec.get(key) or []]
    if requested is None:
        regular = [c["name"] for c in spec.get("containers") or []]
        if len(regular) == 1:
            return regular[0]
        raise bad_request(f"a container name must be specified for pod {name}, choose one of: [{' '.join(regular)}]")
    if requested not in names:
        raise bad_request(f"container {requested} is not valid for pod {name}")
    return requested


def _require_running(pod: dict, container: str) -> None:
    name, phase = pod["metadata"]["name"], (pod.get("status") or {}).get("phase")
    if not pod["spec"].get("nodeName"):
        raise bad_request(f"pod {name} does not have a host assigned")
    if phase in ("Succeeded", "Failed"):
        raise bad_request(f"cannot exec into a container in a completed pod; current phase is {phase}")
    if phase != "Running":
        raise bad_request(f'container not found ("{container}")')


def _group(name: str, version: str) -> dict:
    gv = {"groupVersion": f"{name}/{version}", "version": version}
    return {"name": name, "versions": [gv], "preferredVersion": gv}


def _resource_list(group: str, version: str) -> dict:
    resources = []
    for rtype in (r for r in RESOURCES.values() if r.group == group and r.version == version):
        resources.append({"name": rtype.plural, "singularName": rtype.singular, "namespaced": rtype.namespaced,
                          "kind": rtype.kind, "verbs": _VERBS, **({"shortNames": list(rtype.short_names)} if rtype.short_names else {})})
        for sub in rtype.subresources:
            resources.append({"name": f"{rtype.plural}/{sub}", "singularName": "", "namespaced": rtype.namespaced,
                              "kind": _SUBRESOURCE_KINDS.get(sub, rtype.kind), "verbs": list(_SUBRESOURCE_VERBS[sub])})
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": f"{group}/{version}" if group else version,
            "resources": resources}
