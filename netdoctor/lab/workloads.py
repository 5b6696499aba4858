"""The lab's Deployment and ReplicaSet controllers, with Kubernetes' adoption rules.

Called by the lab controller on every reconcile. Like the real ReplicaSet controller, an orphan
pod whose labels match a ReplicaSet's selector is adopted, and a ReplicaSet with too many pods
deletes the newest: netdoctor's probes must never be such orphans (see real-cluster-facts).
"""

from __future__ import annotations

import hashlib
import json
import secrets

from netdoctor.labels import from_label_selector

ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def template_hash(template: dict) -> str:
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()
    return "".join(ALPHABET[int(digest[i : i + 2], 16) % len(ALPHABET)] for i in range(0, 20, 2))


def random_suffix(length: int = 5) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def controller_ref(obj: dict) -> dict:
    return {
        "apiVersion": obj["apiVersion"],
        "kind": obj["kind"],
        "name": obj["metadata"]["name"],
        "uid": obj["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controller_of(obj: dict) -> dict | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def reconcile_deployments(store) -> None:
    for deploy in store.list("deployments"):
        _reconcile_deployment(store, deploy)


def _reconcile_deployment(store, deploy: dict) -> None:
    meta, spec = deploy["metadata"], deploy["spec"]
    ns = meta["namespace"]
    template = spec["template"]
    pth = template_hash(template)
    owned = [rs for rs in store.list("replicasets", ns) if (controller_of(rs) or {}).get("uid") == meta["uid"]]
    current = next((rs for rs in owned if rs["metadata"]["labels"].get("pod-template-hash") == pth), None)
    replicas = spec.get("replicas", 1)
    if current is None:
        labels = {**(template["metadata"].get("labels") or {}), "pod-template-hash": pth}
        selector = json.loads(json.dumps(spec["selector"]))
        selector.setdefault("matchLabels", {})["pod-template-hash"] = pth
        rs_template = json.loads(json.dumps(template))
        rs_template["metadata"]["labels"] = labels
        current = store.create("replicasets", {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": f"{meta['name']}-{pth}", "namespace": ns, "labels": labels,
                         "ownerReferences": [controller_ref(deploy)]},
            "spec": {"replicas": replicas, "selector": selector, "template": rs_template},
        }, ns)
    elif current["spec"].get("replicas") != replicas:
        store.patch("replicasets", ns, current["metadata"]["name"], {"spec": {"replicas": replicas}},
                    "application/merge-patch+json")
    for old in owned:
        if old["metadata"]["uid"] != current["metadata"]["uid"]:
            store.delete("replicasets", ns, old["metadata"]["name"])
    _deployment_status(store, deploy, current)


def _deployment_status(store, deploy: dict, rs: dict) -> None:
    rs = store.get("replicasets", rs["metadata"]["namespace"], rs["metadata"]["name"])
    rs_status = rs.get("status") or {}
    status = {
        "observedGeneration": deploy["metadata"].get("generation", 1),
        "replicas": rs_status.get("replicas", 0),
        "updatedReplicas": rs_status.get("replicas", 0),
        "readyReplicas": rs_status.get("readyReplicas", 0),
        "availableReplicas": rs_status.get("readyReplicas", 0),
    }
    if deploy.get("status") != status:
        store.update_status("deployments", deploy["metadata"]["namespace"], deploy["metadata"]["name"], status)


def reconcile_replicasets(store) -> None:
    for rs in store.list("replicasets"):
        _reconcile_replicaset(store, rs)


def _reconcile_replicaset(store, rs: dict) -> None:
    ns, uid = rs["metadata"]["namespace"], rs["metadata"]["uid"]
    selector = from_label_selector(rs["spec"]["selector"])
    pods = []
    for pod in store.list("pods", ns):
        if pod["metadata"].get("deletionTimestamp") or pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
            continue
        ref = controller_of(pod)
        if ref is None and selector.matches(pod["metadata"].get("labels") or {}):
            pod = _adopt(store, rs, pod)
            ref = controller_of(pod)
        if ref and ref.get("uid") == uid:
            pods.append(pod)
    want = rs["spec"].get("replicas", 1)
    for _ in range(want - len(pods)):
        pods.append(_create_pod(store, rs))
    if len(pods) > want:
        newest_first = sorted(pods, key=lambda p: p["metadata"]["creationTimestamp"], reverse=True)
        for pod in newest_first[: len(pods) - want]:
            store.delete("pods", ns, pod["metadata"]["name"])
        pods = newest_first[len(pods) - want :]
    ready = sum(1 for p in pods if _is_ready(p))
    status = {"replicas": len(pods), "readyReplicas": ready, "availableReplicas": ready,
              "observedGeneration": rs["metadata"].get("generation", 1)}
    if rs.get("status") != status:
        store.update_status("replicasets", ns, rs["metadata"]["name"], status)


def _adopt(store, rs: dict, pod: dict) -> dict:
    refs = list(pod["metadata"].get("ownerReferences") or []) + [controller_ref(rs)]
    return store.patch("pods", pod["metadata"]["namespace"], pod["metadata"]["name"],
                       {"metadata": {"ownerReferences": refs}}, "application/merge-patch+json")


def _create_pod(store, rs: dict) -> dict:
    template = json.loads(json.dumps(rs["spec"]["template"]))
    metadata = template.get("metadata") or {}
    metadata.update({
        "name": f"{rs['metadata']['name']}-{random_suffix()}",
        "namespace": rs["metadata"]["namespace"],
        "ownerReferences": [controller_ref(rs)],
    })
    return store.create("pods", {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
                                 "spec": template["spec"]}, rs["metadata"]["namespace"])


def _is_ready(pod: dict) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond["type"] == "Ready":
            return cond["status"] == "True"
    return False
