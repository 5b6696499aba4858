"""The lab's EndpointSlice and Endpoints controller: Services' selectors against pods' readiness.

Called by the lab controller on every reconcile. Pure `desired_*` functions compute the objects a
real control plane would publish; `reconcile_endpoints` writes only what changed.
"""

from __future__ import annotations

import hashlib

from netdoctor.lab.api.status import ApiError
from netdoctor.labels import from_match_labels

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
MANAGED_BY = {"endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}


def pod_ready(pod: dict) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond["type"] == "Ready":
            return cond["status"] == "True"
    return False


def resolve_target_port(service_port: dict, pod: dict) -> int | None:
    target = service_port.get("targetPort", service_port["port"])
    if isinstance(target, int) or str(target).isdigit():
        return int(target)
    for container in pod["spec"].get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target and port.get("protocol", "TCP") == service_port.get("protocol", "TCP"):
                return int(port["containerPort"])
    return None


def selected_pods(service: dict, pods: list[dict]) -> list[dict]:
    selector = from_match_labels(service["spec"].get("selector"))
    return [
        p for p in pods
        if p["metadata"]["namespace"] == service["metadata"]["namespace"]
        and selector.matches(p["metadata"].get("labels") or {})
        and (p.get("status") or {}).get("podIP")
        and (p.get("status") or {}).get("phase") in ("Pending", "Running")
        and not p["metadata"].get("deletionTimestamp")
    ]


def desired_slice(service: dict, pods: list[dict]) -> dict:
    meta = service["metadata"]
    members = selected_pods(service, pods)
    publish_all = service["spec"].get("publishNotReadyAddresses", False)
    ports = []
    for sp in service["spec"].get("ports") or []:
        resolved = [resolve_target_port(sp, p) for p in members]
        number = next((r for r in resolved if r is not None), None)
        if number is None and members:
            continue
        ports.append({"name": sp.get("name", ""), "protocol": sp.get("protocol", "TCP"),
                      "port": number if number is not None else _numeric(sp)})
    endpoints = []
    for pod in sorted(members, key=lambda p: p["status"]["podIP"]):
        ready = pod_ready(pod)
        endpoints.append({
            "addresses": [pod["status"]["podIP"]],
            "conditions": {"ready": ready or publish_all, "serving": ready, "terminating": False},
            "nodeName": pod["spec"].get("nodeName"),
            "targetRef": {"kind": "Pod", "namespace": meta["namespace"], "name": pod["metadata"]["name"],
                          "uid": pod["metadata"]["uid"]},
        })
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{meta['name']}-{_suffix(meta['uid'])}",
            "namespace": meta["namespace"],
            "labels": {SERVICE_NAME_LABEL: meta["name"], **MANAGED_BY},
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": meta["name"],
                                 "uid": meta["uid"], "controller": True, "blockOwnerDeletion": True}],
        },
        "addressType": "IPv4",
        "ports": ports,
        "endpoints": endpoints,
    }


def desired_endpoints(service: dict, slice_: dict) -> dict:
    meta = service["metadata"]
    ready, not_ready = [], []
    for ep in slice_["endpoints"]:
        address = {"ip": ep["addresses"][0], "nodeName": ep["nodeName"], "targetRef": ep["targetRef"]}
        (ready if ep["conditions"]["ready"] else not_ready).append(address)
    subset = {"ports": [{"name": p["name"], "port": p["port"], "protocol": p["protocol"]} for p in slice_["ports"]]}
    if ready:
        subset["addresses"] = ready
    if not_ready:
        subset["notReadyAddresses"] = not_ready
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                     "ownerReferences": slice_["metadata"]["ownerReferences"]},
        "subsets": [subset] if ready or not_ready else [],
    }


def reconcile_endpoints(store) -> None:
    pods = store.list("pods")
    for service in store.list("services"):
        if service["spec"].get("selector") is None and service["spec"].get("clusterIP") != "None":
            continue  # a Service without selector: its endpoints are the user's
        ns = service["metadata"]["namespace"]
        slice_ = desired_slice(service, pods)
        _write(store, "endpointslices", ns, slice_, ("addressType", "ports", "endpoints"))
        _write(store, "endpoints", ns, desired_endpoints(service, slice_), ("subsets",))


def _write(store, resource: str, ns: str, desired: dict, fields: tuple[str, ...]) -> None:
    name = desired["metadata"]["name"]
    try:
        current = store.get(resource, ns, name)
    except ApiError as exc:
        if exc.code != 404:
            raise
        store.create(resource, desired, ns)
        return
    if any(current.get(f) != desired[f] for f in fields) or \
            current["metadata"].get("labels") != desired["metadata"].get("labels"):
        merged = {**current, **{f: desired[f] for f in fields}}
        merged["metadata"] = {**current["metadata"], "labels": desired["metadata"].get("labels")}
        store.replace(resource, ns, name, merged)


def _numeric(service_port: dict) -> int:
    target = service_port.get("targetPort", service_port["port"])
    return int(target) if isinstance(target, int) or str(target).isdigit() else int(service_port["port"])


def _suffix(uid: str) -> str:
    return hashlib.sha256(uid.encode()).hexdigest()[:5]
