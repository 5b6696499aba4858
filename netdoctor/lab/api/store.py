"""The lab API's thread-safe in-memory object store, holding API-shaped dicts (the wire format).

Used by the API server for every request and directly by the lab's controllers. It assigns
metadata (uid, resourceVersion, timestamps, generation, generateName), applies defaults and
admission, garbage-collects through ownerReferences and notifies subscribers of every change.
Lists are paginated as a real API server paginates them (`page`: limit, continue tokens that keep
the list at its resourceVersion, 410 Expired, remainingItemCount). Ghost objects (`add_ghosts`)
fill the API side of a big cluster: served to clients, never seen by the controllers.
Pods are deleted gracefully, as a real API server does: a pod bound to a node gets a
deletionTimestamp (now + its grace period) and stays, Terminating, until its kubelet has stopped
its containers and deletes it with grace 0; an unscheduled or finished pod, a grace of 0, or a pod
bound to a node that does not exist (the pod GC's orphans) goes at once.
Every dict going in or out is a deep copy, but for `page`'s (the API server's lists), which are the
stored objects themselves: stored objects are replaced on change, never changed in place.
"""

from __future__ import annotations

import base64
import json
import pickle
import random
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone

from netdoctor import labels
from netdoctor.lab.api import admission, defaults
from netdoctor.lab.api import patch as patches
from netdoctor.lab.api.resources import RESOURCES, ResourceType
from netdoctor.lab.api.status import (
    ApiError,
    already_exists,
    bad_request,
    conflict,
    invalid,
    not_found,
)

Callback = Callable[[str, str, dict], None]
Key = tuple[str | None, str]
PROPAGATIONS = ("Background", "Foreground", "Orphan")
PAGE_SECONDS = 300.0  # how long a limited list's continue token holds (etcd's compaction interval)
MAX_LISTS = 64  # limited lists in progress kept; an older one's token is Expired
EXPIRED_CONTINUE = ("The provided continue parameter is too old to display a consistent list result. You can start "
                    "a new list without the continue parameter.")
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
# Field selectors each resource supports besides metadata.name and metadata.namespace.
FIELD_LABELS = {
    "pods": {"spec.nodeName", "status.phase", "spec.restartPolicy", "spec.schedulerName",
             "spec.serviceAccountName", "spec.hostNetwork", "status.podIP", "status.nominatedNodeName"},
    "events": {"involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
               "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
               "reason", "reportingComponent", "source", "type"},
    "namespaces": {"status.phase"},
    "nodes": {"spec.unschedulable"},
}
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
_DEFAULTERS = {
    "pods": defaults.pod,
    "services": defaults.service,
    "namespaces": defaults.namespace,
    "deployments": defaults.workload,
    "replicasets": defaults.workload,
    "endpointslices": defaults.endpoint_slice,
    "jobs": defaults.job,
}


def _copy(obj):
    """A deep copy of JSON-like data (what the store holds): pickle's round trip, 5× faster than
    copy.deepcopy, so a reconcile pass listing the store holds the API server's lock less."""
    return pickle.loads(pickle.dumps(obj, pickle.HIGHEST_PROTOCOL))


def resource_type(resource: str) -> ResourceType:
    rtype = RESOURCES.get(resource)
    if rtype is None:
        raise ApiError(404, "the server could not find the requested resource", details={})
    return rtype


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Store:
    """Objects by resource and (namespace, name); starts with the system namespaces and `kubernetes`."""

    def __init__(self, seed: int | None = None, page_seconds: float = PAGE_SECONDS):
        self._lock = threading.RLock()
        self._objects: dict[str, dict[Key, dict]] = {plural: {} for plural in RESOURCES}
        self._ghosts: dict[str, dict[str | None, dict[str, dict]]] = {plural: {} for plural in RESOURCES}
        self._lists: OrderedDict[str, tuple[int, float, list[dict]]] = OrderedDict()  # limited lists in progress
        self._lists_made = 0
        self._page_seconds = page_seconds
        self._version = 0
        self._rng = random.Random(seed)
        self._subscribers: list[Callback] = []
        self._pending: deque[tuple[str, str, dict]] = deque()
        self._dispatching = threading.Lock()
        for name in SYSTEM_NAMESPACES:
            self.create("namespaces", {"metadata": {"name": name}})
        self.create("services", _kubernetes_service(), "default")

    # --- reads ---------------------------------------------------------------------------------

    def get(self, resource: str, namespace: str | None, name: str) -> dict:
        rtype = resource_type(resource)
        with self._lock:
            ghost = self._ghost(rtype, namespace, name)
            return _copy(ghost if ghost is not None else self._find(rtype, namespace, name))

    def page(self, resource: str, namespace: str | None = None, label_selector: str | None = None,
             field_selector: str | None = None, limit: int = 0, token: str | None = None) -> dict:
        """A List as the API server sends it: ghosts included, `limit` items at most (0: all),
        `token` continuing an earlier page. The first page of a limited list fixes the list at
        its resourceVersion (the objects as they were then), the pages after it come from there
        whatever changed meanwhile; a token older than PAGE_SECONDS, or evicted by MAX_LISTS newer
        lists, is Expired (410), as a continue token is once etcd compacted its revision. The items
        are the stored objects themselves, not copies (a stored object is never changed in place:
        see `_rewrite`): the server only serializes them, and must not change them."""
        if token:
            version, items = self._continued(token)
        else:
            match = self.matcher(resource, label_selector, field_selector)
            with self._lock:
                items = [o for _, o in sorted(((k, o) for k, o in self._candidates(resource, namespace) if match(o)),
                                              key=lambda kv: kv[0])]
                version = self._version
        shown, rest = (items[:limit], items[limit:]) if limit else (items, [])
        meta: dict = {"resourceVersion": str(version)}
        if rest:
            meta["continue"] = self._remember(version, rest)
            meta["remainingItemCount"] = len(rest)
        return {"metadata": meta, "items": shown}

    def add_ghosts(self, resource: str, objects: Iterable[dict]) -> int:
        """Objects with no data plane and no controller: served by the API (get, list, watch's
        initial list) and invisible to the lab's controllers (`list`, `snapshot`). Read-only:
        a write answers 405. Bulk-loaded without admission (the lab builds them valid)."""
        rtype = resource_type(resource)
        count = 0
        with self._lock:
            for obj in objects:
                meta = obj["metadata"]
                meta.update(uid=str(uuid.uuid4()), creationTimestamp=now(), resourceVersion=self._next_version())
                obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
                namespace = meta.get("namespace") if rtype.namespaced else None
                self._ghosts[resource].setdefault(namespace, {})[meta["name"]] = obj
                count += 1
        return count

    def _candidates(self, resource: str, namespace: str | None) -> Iterable[tuple[tuple[str, str], dict]]:
        """(sort key, object) of every object, ghost or not, in `namespace` (None: all)."""
        for (ns, name), obj in self._objects[resource].items():
            if namespace is None or ns == namespace:
                yield (ns or "", name), obj
        ghosts = self._ghosts[resource]
        for ns in (ghosts if namespace is None else [namespace] if namespace in ghosts else []):
            for name, obj in ghosts[ns].items():
                yield (ns or "", name), obj

    def _remember(self, version: int, rest: list[dict]) -> str:
        with self._lock:
            self._lists_made += 1
            key = str(self._lists_made)
            self._lists[key] = (version, time.monotonic() + self._page_seconds, rest)
            while len(self._lists) > MAX_LISTS:
                self._lists.popitem(last=False)
        start = rest[0]["metadata"]
        raw = json.dumps({"v": "meta.k8s.io/v1", "rv": version, "list": key,
                          "start": f"{start.get('namespace', '')}/{start['name']}"})
        return base64.urlsafe_b64encode(raw.encode()).decode()

    def _continued(self, token: str) -> tuple[int, list[dict]]:
        try:
            decoded = json.loads(base64.urlsafe_b64decode(token.encode()))
            key, version = str(decoded["list"]), int(decoded["rv"])
        except (ValueError, KeyError, TypeError):
            raise bad_request("continue key is not valid: incorrect encoded start resourceVersion "
                              "(version meta.k8s.io/v1)") from None
        with self._lock:
            remembered = self._lists.pop(key, None)
        if remembered is None or remembered[0] != version or remembered[1] < time.monotonic():
            raise ApiError(410, EXPIRED_CONTINUE, reason="Expired")
        return version, remembered[2]

    def list(self, resource: str, namespace: str | None = None, label_selector: str | None = None,
             field_selector: str | None = None) -> list[dict]:
        return self.snapshot(resource, namespace, label_selector, field_selector)[0]

    def snapshot(self, resource: str, namespace: str | None = None, label_selector: str | None = None,
                 field_selector: str | None = None) -> tuple[list[dict], str]:
        """list() plus the resourceVersion it is consistent with (a List's metadata.resourceVersion)."""
        match = self.matcher(resource, label_selector, field_selector)
        with self._lock:
            items = [o for (ns, _), o in sorted(self._objects[resource].items(), key=lambda kv: (kv[0][0] or "", kv[0][1]))
                     if (namespace is None or ns == namespace) and match(o)]
            return _copy(items), str(self._version)

    def matcher(self, resource: str, label_selector: str | None, field_selector: str | None) -> Callable[[dict], bool]:
        """A predicate for these selectors; ApiError 400 when a selector is malformed or unsupported."""
        resource_type(resource)
        try:
            selector = labels.parse(label_selector or "")
        except labels.SelectorError as exc:
            raise bad_request(f"unable to parse requirement: {exc}") from exc
        fields = _parse_fields(resource, field_selector or "")
        return lambda obj: selector.matches((obj.get("metadata") or {}).get("labels") or {}) and all(
            (_field(obj, path) == value) == equal for path, equal, value in fields
        )

    # --- writes --------------------------------------------------------------------------------

    def create(self, resource: str, obj: dict, namespace: str | None = None, *, dry_run: bool = False) -> dict:
        """Store a new object; with dry_run, only answer what would be stored (nothing changes)."""
        rtype = resource_type(resource)
        obj = self._prepare(rtype, _copy(obj), namespace)
        with self._lock:
            meta = obj["metadata"]
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = self._generate_name(rtype, meta["namespace"] if rtype.namespaced else None, meta["generateName"])
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=now())  # before validation, as BeforeCreate does
            self._admit(rtype, obj, None)
            key = (meta.get("namespace"), meta["name"])
            if key in self._objects[resource]:
                raise already_exists(resource, meta["name"], rtype.group)
            if "spec" in obj and resource not in ("namespaces", "nodes"):
                meta["generation"] = 1
            if dry_run:
                return _copy(obj)
            meta["resourceVersion"] = self._next_version()
            self._objects[resource][key] = obj
            self._queue("ADDED", resource, obj)
        self._dispatch()
        return _copy(obj)

    def replace(self, resource: str, namespace: str | None, name: str, obj: dict) -> dict:
        rtype = resource_type(resource)
        body = _copy(obj)
        body_name = (body.get("metadata") or {}).get("name")
        if body_name and body_name != name:
            raise bad_request(f"the name of the object ({body_name}) does not match the name on the URL ({name})")
        return self._update(rtype, namespace, name, lambda _old: body)

    def patch(self, resource: str, namespace: str | None, name: str, patch, patch_type: str) -> dict:
        rtype = resource_type(resource)
        return self._update(rtype, namespace, name, lambda old: patches.apply(old, patch, patch_type))

    def update_status(self, resource: str, namespace: str | None, name: str, status: dict) -> dict:
        rtype = resource_type(resource)
        with self._lock:
            current = self._find(rtype, namespace, name)
            if current.get("status") == status:
                return _copy(current)
            current = self._rewrite(rtype, current)
            current["status"] = _copy(status)
            current["metadata"]["resourceVersion"] = self._next_version()
            self._queue("MODIFIED", resource, current)
        self._dispatch()
        return _copy(current)

    def update_ephemeral_containers(self, namespace: str, name: str, containers: list[dict]) -> dict:
        """The pods/ephemeralcontainers subresource: add ephemeral containers (admission applies)."""
        rtype = RESOURCES["pods"]
        with self._lock:
            current = self._find(rtype, namespace, name)
            _check_ephemeral_unchanged(current, containers)
            updated = _copy(current)
            updated["spec"]["ephemeralContainers"] = _copy(containers)
            defaults.pod_spec(updated["spec"])
            admission.validate(rtype, updated)
            admission.check_pod_security(updated, self._find(RESOURCES["namespaces"], None, namespace))
            if updated == current:
                return _copy(current)
            updated["metadata"]["resourceVersion"] = self._next_version()
            self._objects["pods"][(namespace, name)] = updated
            self._queue("MODIFIED", "pods", updated)
        self._dispatch()
        return _copy(updated)

    def delete(self, resource: str, namespace: str | None, name: str, propagation: str = "Background",
               grace_seconds: int | None = None) -> dict:
        """Delete (a pod: gracefully, see the module docstring); `grace_seconds` is DeleteOptions'
        gracePeriodSeconds (None: the pod's terminationGracePeriodSeconds)."""
        rtype = resource_type(resource)
        if propagation not in PROPAGATIONS:
            raise bad_request(f"propagationPolicy: Unsupported value: {propagation!r}")
        with self._lock:
            self._find(rtype, namespace, name)
            deleted = self._delete(rtype, namespace, name, propagation, grace_seconds)
        self._dispatch()
        return _copy(deleted)

    def subscribe(self, callback: Callback) -> None:
        """callback(event_type, resource, obj) after every change, in order, outside the store lock."""
        with self._lock:
            self._subscribers.append(callback)

    def resource_version(self) -> int:
        with self._lock:
            return self._version

    # --- internals -----------------------------------------------------------------------------

    def _prepare(self, rtype: ResourceType, obj: dict, namespace: str | None) -> dict:
        if not isinstance(obj, dict):
            raise bad_request("the body of the request is not a JSON object")
        meta = obj.get("metadata")
        meta = obj["metadata"] = dict(meta) if isinstance(meta, dict) else {}
        for server_owned in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "generation"):
            meta.pop(server_owned, None)
        if rtype.namespaced:
            body_ns = meta.get("namespace")
            if namespace and body_ns and body_ns != namespace:
                raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
            meta["namespace"] = namespace or body_ns or "default"
        else:
            meta.pop("namespace", None)
        obj["apiVersion"], obj["kind"] = rtype.api_version, rtype.kind
        return obj

    def _admit(self, rtype: ResourceType, obj: dict, old: dict | None) -> None:
        """Defaults, allocations, validation and admission; caller holds the lock."""
        _DEFAULTERS.get(rtype.plural, lambda _o: None)(obj)
        admission.validate(rtype, obj)
        ns_name = obj["metadata"].get("namespace")
        if rtype.namespaced:
            namespace = self._objects["namespaces"].get((None, ns_name))
            if namespace is None:
                raise not_found("namespaces", ns_name)
            if rtype.plural == "pods" and old is None:
                admission.check_pod_security(obj, namespace)
        if rtype.plural == "services":
            others = [o for k, o in self._objects["services"].items() if k != (ns_name, obj["metadata"]["name"])]
            defaults.allocate_service(obj, others, self._rng)

    def _update(self, rtype: ResourceType, namespace: str | None, name: str, change: Callable[[dict], dict]) -> dict:
        with self._lock:
            old = self._find(rtype, namespace, name)
            changed = change(_copy(old))
            requested = ((changed.get("metadata") or {}) if isinstance(changed, dict) else {}).get("resourceVersion")
            new = self._prepare(rtype, changed, old["metadata"].get("namespace"))
            new = self._merge_server_fields(rtype, old, new)
            if requested and requested != old["metadata"]["resourceVersion"]:
                raise conflict(rtype.plural, name, rtype.group)
            self._admit(rtype, new, old)
            if new == old:
                return _copy(old)
            if new.get("spec") != old.get("spec") and "generation" in old["metadata"]:
                new["metadata"]["generation"] = old["metadata"]["generation"] + 1
            new["metadata"]["resourceVersion"] = self._next_version()
            self._objects[rtype.plural][(namespace if rtype.namespaced else None, name)] = new
            self._queue("MODIFIED", rtype.plural, new)
        self._dispatch()
        return _copy(new)

    @staticmethod
    def _merge_server_fields(rtype: ResourceType, old: dict, new: dict) -> dict:
        """Keep what a client may not change through the main resource: identity, status, ClusterIP."""
        for key in ("uid", "creationTimestamp", "generation", "resourceVersion", "name", "namespace",
                    "deletionTimestamp", "deletionGracePeriodSeconds"):
            if key in old["metadata"]:
                new["metadata"][key] = old["metadata"][key]
        if rtype.has_status and "status" in old:
            new["status"] = _copy(old["status"])
        if rtype.plural == "services":
            _keep_service_allocations(old, new.setdefault("spec", {}))
        if rtype.plural == "pods" and old["spec"].get("nodeName") and not new.get("spec", {}).get("nodeName"):
            new.setdefault("spec", {})["nodeName"] = old["spec"]["nodeName"]
        return new

    def _delete(self, rtype: ResourceType, namespace: str | None, name: str, propagation: str,
                grace_seconds: int | None = None) -> dict:
        key = (namespace if rtype.namespaced else None, name)
        obj = self._objects[rtype.plural].get(key)
        if obj is None:
            return {}
        if rtype.plural == "pods":
            grace = self._pod_grace(obj, grace_seconds)
            if grace > 0:
                return self._mark_terminating(obj, grace)
        uid = obj["metadata"]["uid"]
        if propagation == "Foreground":
            self._delete_dependents(uid, "Foreground")
        obj = _fresh(self._objects[rtype.plural].pop(key))
        obj["metadata"]["deletionTimestamp"] = now()
        obj["metadata"]["resourceVersion"] = self._next_version()
        self._queue("DELETED", rtype.plural, obj)
        if propagation == "Orphan":
            self._orphan_dependents(uid)
        elif propagation == "Background":
            self._delete_dependents(uid, "Background")
        if rtype.plural == "namespaces":
            self._delete_namespace_contents(name)
        return obj

    def _pod_grace(self, pod: dict, requested: int | None) -> int:
        """The grace period a pod deletion gets (the pod strategy's CheckGracefulDelete); 0: at once."""
        spec, meta = pod.get("spec") or {}, pod["metadata"]
        grace = requested if requested is not None else spec.get("terminationGracePeriodSeconds", 30)
        node = spec.get("nodeName")
        if not node or (None, node) not in self._objects["nodes"]:
            return 0
        if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
            return 0
        already = meta.get("deletionGracePeriodSeconds")
        return max(0, min(grace, already) if already is not None else grace)

    def _mark_terminating(self, pod: dict, grace: int) -> dict:
        """Start (or shorten) a pod's graceful deletion: what its kubelet acts on."""
        if pod["metadata"].get("deletionGracePeriodSeconds") == grace:
            return pod
        pod = self._rewrite(RESOURCES["pods"], pod)
        meta = pod["metadata"]
        when = datetime.now(timezone.utc) + timedelta(seconds=grace)
        meta.update(deletionTimestamp=when.strftime("%Y-%m-%dT%H:%M:%SZ"), deletionGracePeriodSeconds=grace)
        meta["resourceVersion"] = self._next_version()
        self._queue("MODIFIED", "pods", pod)
        return pod

    def _dependents(self, uid: str) -> Iterable[tuple[ResourceType, dict]]:
        return [(RESOURCES[plural], o) for plural, objects in self._objects.items() for o in list(objects.values())
                if any(ref.get("uid") == uid for ref in o["metadata"].get("ownerReferences") or [])]

    def _delete_dependents(self, uid: str, propagation: str) -> None:
        for rtype, dependent in self._dependents(uid):
            meta = dependent["metadata"]
            self._delete(rtype, meta.get("namespace"), meta["name"], propagation)

    def _orphan_dependents(self, uid: str) -> None:
        for rtype, dependent in self._dependents(uid):
            dependent = self._rewrite(rtype, dependent)
            meta = dependent["metadata"]
            meta["ownerReferences"] = [r for r in meta["ownerReferences"] if r.get("uid") != uid]
            if not meta["ownerReferences"]:
                del meta["ownerReferences"]
            meta["resourceVersion"] = self._next_version()
            self._queue("MODIFIED", rtype.plural, dependent)

    def _delete_namespace_contents(self, namespace: str) -> None:
        for plural, objects in self._objects.items():
            for ns, name in [k for k in objects if k[0] == namespace]:
                self._delete(RESOURCES[plural], ns, name, "Background", grace_seconds=0)

    def _find(self, rtype: ResourceType, namespace: str | None, name: str) -> dict:
        obj = self._objects[rtype.plural].get((namespace if rtype.namespaced else None, name))
        if obj is None:
            if self._ghost(rtype, namespace, name) is not None:
                raise ApiError(405, f'{rtype.plural} "{name}" is a ghost object of the lab: read-only',
                               reason="MethodNotAllowed")
            raise not_found(rtype.plural, name, rtype.group)
        return obj

    def _ghost(self, rtype: ResourceType, namespace: str | None, name: str) -> dict | None:
        return self._ghosts[rtype.plural].get(namespace if rtype.namespaced else None, {}).get(name)

    def _rewrite(self, rtype: ResourceType, obj: dict) -> dict:
        """A stored object about to change gets a new dict (its metadata too) in its place: lists
        in progress keep the one they were consistent with (see `page`)."""
        fresh = _fresh(obj)
        meta = fresh["metadata"]
        self._objects[rtype.plural][(meta.get("namespace") if rtype.namespaced else None, meta["name"])] = fresh
        return fresh

    def _generate_name(self, rtype: ResourceType, namespace: str | None, prefix: str) -> str:
        while True:
            name = prefix + "".join(self._rng.choice(_GENERATE_ALPHABET) for _ in range(5))
            if (namespace, name) not in self._objects[rtype.plural]:
                return name

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    def _queue(self, event: str, resource: str, obj: dict) -> None:
        self._pending.append((event, resource, _copy(obj)))

    def _dispatch(self) -> None:
        """Deliver queued events in order; one thread at a time, others leave theirs to it."""
        while self._pending and self._dispatching.acquire(blocking=False):
            try:
                while self._pending:
                    event, resource, obj = self._pending.popleft()
                    for callback in list(self._subscribers):
                        callback(event, resource, _copy(obj))
            finally:
                self._dispatching.release()


def _fresh(obj: dict) -> dict:
    return {**obj, "metadata": dict(obj["metadata"])}


def _kubernetes_service() -> dict:
    return {
        "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": defaults.KUBERNETES_SERVICE_IP,
                 "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]},
    }


def _keep_service_allocations(old_service: dict, new: dict) -> None:
    old = old_service["spec"]
    for key in ("clusterIP", "clusterIPs"):
        if not new.get(key) and old.get(key):
            new[key] = old[key]
    if new.get("clusterIP") != old.get("clusterIP"):
        cause = admission.invalid_value("spec.clusterIP", new.get("clusterIP"), "field is immutable")
        raise invalid("Service", old_service["metadata"]["name"], [cause])
    old_ports = {(p.get("port"), p.get("protocol", "TCP")): p.get("nodePort") for p in old.get("ports") or []}
    for port in new.get("ports") or []:
        kept = old_ports.get((port.get("port"), port.get("protocol", "TCP")))
        if kept and "nodePort" not in port and new.get("type") in ("NodePort", "LoadBalancer"):
            port["nodePort"] = kept
    if old.get("healthCheckNodePort") and new.get("type") == "LoadBalancer" \
            and new.get("externalTrafficPolicy") == "Local":
        new.setdefault("healthCheckNodePort", old["healthCheckNodePort"])


def _check_ephemeral_unchanged(pod: dict, containers: list[dict]) -> None:
    new_by_name = {c.get("name"): c for c in containers}
    for existing in pod["spec"].get("ephemeralContainers") or []:
        if existing["name"] not in new_by_name:
            cause = {"reason": "FieldValueForbidden", "field": "spec.ephemeralContainers",
                     "message": f'Forbidden: existing ephemeral containers "{existing["name"]}" may not be removed'}
            raise invalid("Pod", pod["metadata"]["name"], [cause])


def _parse_fields(resource: str, text: str) -> list[tuple[str, bool, str]]:
    fields = []
    for term in filter(None, (t.strip() for t in text.split(","))):
        for op, equal in (("!=", False), ("==", True), ("=", True)):
            if op in term:
                path, value = (s.strip() for s in term.split(op, 1))
                break
        else:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{term}'")
        if path not in ("metadata.name", "metadata.namespace") and path not in FIELD_LABELS.get(resource, ()):
            raise bad_request(f'field label not supported: {path}')
        fields.append((path, equal, value))
    return fields


def _field(obj: dict, path: str) -> str:
    node = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, bool):
        return str(node).lower()
    return "" if node is None else str(node)
