"""The lab's EndpointSlice and Endpoints controllers: Services' selectors against pods' readiness.

Called by the lab controller on every reconcile. Pure `desired_*` functions compute the objects a
real control plane would publish; `reconcile_endpoints` writes only what changed and deletes the
slices it no longer wants. As the real controllers do:
- a Service without a selector, or of type ExternalName, gets nothing (its slices are the user's);
- a named targetPort is resolved on each pod (by name and protocol); pods whose ports resolve to
  different numbers go into different slices, one per port mapping;
- a terminating pod stays, `ready=false, serving=<its readiness>, terminating=true` (the
  Endpoints object leaves it out); `publishNotReadyAddresses` makes every endpoint ready;
- a pod whose `hostname` is set and whose `subdomain` is the Service's name gets that hostname.
"""

from __future__ import annotations

import hashlib

from netdoctor.lab.api.status import ApiError
from netdoctor.labels import from_match_labels

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
HEADLESS_LABEL = "service.kubernetes.io/headless"
MANAGED_BY_LABEL = "endpointslice.kubernetes.io/managed-by"
MANAGED_BY = {MANAGED_BY_LABEL: "endpointslice-controller.k8s.io"}

PortKey = tuple[tuple[str, str, int], ...]  # (name, protocol, number) per Service port that resolved


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
    """The pods a Service's slices list: selected, with an IP, not finished (terminating ones too)."""
    selector = from_match_labels(service["spec"].get("selector"))
    return [
        p for p in pods
        if p["metadata"]["namespace"] == service["metadata"]["namespace"]
        and selector.matches(p["metadata"].get("labels") or {})
        and (p.get("status") or {}).get("podIP")
        and (p.get("status") or {}).get("phase") in ("Pending", "Running")
    ]


def managed(service: dict) -> bool:
    """Whether the controllers publish this Service's endpoints (else they are the user's)."""
    spec = service.get("spec") or {}
    return bool(spec.get("selector")) and spec.get("type") != "ExternalName"


def desired_slices(service: dict, pods: list[dict]) -> list[dict]:
    """One slice per port mapping of the selected pods (one empty slice when none is selected)."""
    groups: dict[PortKey, list[dict]] = {}
    for pod in selected_pods(service, pods):
        groups.setdefault(_pod_ports(service, pod), []).append(pod)
    if not groups:
        groups[_numeric_ports(service)] = []
    keys = sorted(groups)
    return [_slice(service, key, groups[key], first=key == keys[0]) for key in keys]


def desired_endpoints(service: dict, slices: list[dict]) -> dict:
    """The v1 Endpoints object: one subset per slice, terminating pods left out."""
    meta = service["metadata"]
    subsets = []
    for slice_ in slices:
        ready, not_ready = [], []
        for ep in slice_["endpoints"]:
            if ep["conditions"]["terminating"] and not ep["conditions"]["ready"]:
                continue
            address = {"ip": ep["addresses"][0], **({"hostname": ep["hostname"]} if "hostname" in ep else {}),
                       "nodeName": ep["nodeName"], "targetRef": ep["targetRef"]}
            (ready if ep["conditions"]["ready"] else not_ready).append(address)
        if ready or not_ready:
            subset = {"ports": [{"name": p["name"], "port": p["port"], "protocol": p["protocol"]}
                                for p in slice_["ports"]]}
            subset.update({k: v for k, v in (("addresses", ready), ("notReadyAddresses", not_ready)) if v})
            subsets.append(subset)
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                     "ownerReferences": [_owner(service)]},
        "subsets": subsets,
    }


def reconcile_endpoints(store) -> None:
    pods = store.list("pods")
    slices = store.list("endpointslices")
    for service in store.list("services"):
        if not managed(service):
            continue
        ns = service["metadata"]["namespace"]
        wanted = desired_slices(service, pods)
        for slice_ in wanted:
            _write(store, "endpointslices", ns, slice_, ("addressType", "ports", "endpoints"))
        names = {s["metadata"]["name"] for s in wanted}
        for stale in _owned_slices(service, slices):
            if stale["metadata"]["name"] not in names:
                store.delete("endpointslices", ns, stale["metadata"]["name"])
        _write(store, "endpoints", ns, desired_endpoints(service, wanted), ("subsets",))


def _pod_ports(service: dict, pod: dict) -> PortKey:
    ports = []
    for sp in service["spec"].get("ports") or []:
        number = resolve_target_port(sp, pod)
        if number is not None:
            ports.append((sp.get("name", ""), sp.get("protocol", "TCP"), number))
    return tuple(ports)


def _numeric_ports(service: dict) -> PortKey:
    return tuple((sp.get("name", ""), sp.get("protocol", "TCP"), _numeric(sp)) for sp in service["spec"].get("ports") or [])


def _slice(service: dict, ports: PortKey, members: list[dict], first: bool) -> dict:
    meta, spec = service["metadata"], service["spec"]
    publish_all = spec.get("publishNotReadyAddresses", False)
    labels = {**(meta.get("labels") or {}), SERVICE_NAME_LABEL: meta["name"], **MANAGED_BY}
    if spec.get("clusterIP") == "None":
        labels[HEADLESS_LABEL] = ""
    suffix = _suffix(meta["uid"] if first else meta["uid"] + repr(ports))
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": f"{meta['name']}-{suffix}", "namespace": meta["namespace"], "labels": labels,
                     "ownerReferences": [_owner(service)]},
        "addressType": "IPv4",
        "ports": [{"name": name, "protocol": protocol, "port": number} for name, protocol, number in ports],
        "endpoints": [_endpoint(service, pod, publish_all)
                      for pod in sorted(members, key=lambda p: p["status"]["podIP"])],
    }


def _endpoint(service: dict, pod: dict, publish_all: bool) -> dict:
    serving = pod_ready(pod)
    terminating = bool(pod["metadata"].get("deletionTimestamp"))
    endpoint = {
        "addresses": [pod["status"]["podIP"]],
        "conditions": {"ready": publish_all or (serving and not terminating), "serving": serving,
                       "terminating": terminating},
        "nodeName": pod["spec"].get("nodeName"),
        "targetRef": {"kind": "Pod", "namespace": pod["metadata"]["namespace"], "name": pod["metadata"]["name"],
                      "uid": pod["metadata"]["uid"]},
    }
    spec = pod["spec"]
    if spec.get("hostname") and spec.get("subdomain") == service["metadata"]["name"]:
        endpoint["hostname"] = spec["hostname"]
    return endpoint


def _owner(service: dict) -> dict:
    meta = service["metadata"]
    return {"apiVersion": "v1", "kind": "Service", "name": meta["name"], "uid": meta["uid"],
            "controller": True, "blockOwnerDeletion": True}


def _owned_slices(service: dict, slices: list[dict]) -> list[dict]:
    uid = service["metadata"]["uid"]
    return [s for s in slices
            if (s["metadata"].get("labels") or {}).get(MANAGED_BY_LABEL) == MANAGED_BY[MANAGED_BY_LABEL]
            and any(ref.get("uid") == uid for ref in s["metadata"].get("ownerReferences") or [])]


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


def _suffix(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:5]
