"""The lab's Deployment and ReplicaSet controllers, with Kubernetes' adoption and rollout rules.

Called by the lab controller on every reconcile. Like the real controllers:
- an orphan pod whose labels match a ReplicaSet's selector is adopted, and an orphan ReplicaSet
  matching a Deployment's selector too (netdoctor's probes must never be such orphans: see
  real-cluster-facts); a ReplicaSet with too many pods deletes the least useful first
  (unscheduled, pending, not ready, then the newest), gracefully;
- a Deployment whose template changed rolls out: RollingUpdate surges the new ReplicaSet by
  maxSurge and scales old ones down only as far as maxUnavailable allows, unhealthy old pods
  first, so a new version that never becomes Ready freezes the rollout with old and new pods
  side by side; Recreate scales the old ones to zero and waits until their pods are gone;
- old ReplicaSets stay at zero replicas (a rollback reuses one) up to revisionHistoryLimit.
Readiness counts as availability (minReadySeconds is not modelled).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import secrets

from netdoctor.labels import from_label_selector

ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
HASH_LABEL = "pod-template-hash"
MERGE = "application/merge-patch+json"
_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


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


def rolling_limits(spec: dict) -> tuple[int, int]:
    """(maxSurge, maxUnavailable) as numbers: percentages of replicas, surge rounded up,
    unavailable down; both zero means one unavailable, as the API server's validation implies."""
    replicas = spec.get("replicas", 1)
    rolling = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    surge = _scaled(rolling.get("maxSurge", "25%"), replicas, math.ceil)
    unavailable = _scaled(rolling.get("maxUnavailable", "25%"), replicas, math.floor)
    return surge, unavailable if surge or unavailable else 1


def new_replicas(replicas: int, surge: int, current_total: int, new_now: int) -> int:
    """How far the new ReplicaSet may grow (deployment util's NewRSNewReplicas)."""
    if new_now >= replicas:
        return replicas
    room = replicas + surge - current_total
    return new_now + min(room, replicas - new_now) if room > 0 else new_now


def old_scale_down(replicas: int, unavailable: int, new: tuple[int, int], old: list[tuple[int, int]]) -> list[int]:
    """The old ReplicaSets' replicas after one rolling step (reconcileOldReplicaSets): `new` and
    each of `old` (oldest first) are (replicas, available)."""
    sizes = [size for size, _ in old]
    min_available = replicas - unavailable
    budget = sum(sizes) + new[0] - min_available - (new[0] - new[1])
    if not sum(sizes) or budget <= 0:
        return sizes
    for i, (size, available) in enumerate(old):  # unhealthy old pods first: they cost nothing
        cut = max(0, min(budget, size - available))
        sizes[i], budget = size - cut, budget - cut
    spare = new[1] + sum(available for _, available in old) - min_available
    for i in range(len(sizes)):  # then available ones, as far as maxUnavailable allows
        cut = min(max(spare, 0), sizes[i])
        sizes[i], spare = sizes[i] - cut, spare - cut
    return sizes


def pods_to_delete(pods: list[dict], count: int) -> list[dict]:
    """The `count` pods a ReplicaSet deletes first: unscheduled, pending, not ready, newest."""
    def rank(pod: dict) -> tuple:
        phase = (pod.get("status") or {}).get("phase", "Pending")
        created = pod["metadata"]["creationTimestamp"]
        return (bool(pod["spec"].get("nodeName")), _PHASE_RANK.get(phase, 0), _is_ready(pod),
                tuple(-ord(c) for c in created))
    return sorted(pods, key=rank)[:count]


# ---- Deployments ----------------------------------------------------------------------------

def reconcile_deployments(store) -> None:
    for deploy in store.list("deployments"):
        _reconcile_deployment(store, deploy)


def _reconcile_deployment(store, deploy: dict) -> None:
    owned = _claim_replicasets(store, deploy)
    new = next((rs for rs in owned if _same_template(rs, deploy)), None)
    old = sorted((rs for rs in owned if rs is not new), key=lambda rs: rs["metadata"]["creationTimestamp"])
    if (deploy["spec"].get("strategy") or {}).get("type") == "Recreate":
        new = _recreate(store, deploy, new, old)
    else:
        new = _roll(store, deploy, new, old)
    _trim_history(store, deploy, old)
    _deployment_status(store, deploy, new, old)


def _claim_replicasets(store, deploy: dict) -> list[dict]:
    """The Deployment's ReplicaSets, adopting orphans whose labels match its selector."""
    meta = deploy["metadata"]
    selector = from_label_selector(deploy["spec"]["selector"])
    owned = []
    for rs in store.list("replicasets", meta["namespace"]):
        ref = controller_of(rs)
        if ref is None and selector.matches(rs["metadata"].get("labels") or {}):
            refs = list(rs["metadata"].get("ownerReferences") or []) + [controller_ref(deploy)]
            rs = store.patch("replicasets", meta["namespace"], rs["metadata"]["name"],
                             {"metadata": {"ownerReferences": refs}}, MERGE)
            ref = controller_of(rs)
        if ref and ref.get("uid") == meta["uid"]:
            owned.append(rs)
    return owned


def _same_template(rs: dict, deploy: dict) -> bool:
    """EqualIgnoreHash: the ReplicaSet's template is the Deployment's, but for the hash label."""
    template = copy.deepcopy(rs["spec"]["template"])
    (template.get("metadata") or {}).get("labels", {}).pop(HASH_LABEL, None)
    return template == deploy["spec"]["template"]


def _roll(store, deploy: dict, new: dict | None, old: list[dict]) -> dict:
    spec = deploy["spec"]
    replicas = spec.get("replicas", 1)
    surge, unavailable = rolling_limits(spec)
    total = sum(_size(rs) for rs in old) + (_size(new) if new else 0)
    wanted = new_replicas(replicas, surge, total, _size(new) if new else 0)
    new = _create_replicaset(store, deploy, wanted) if new is None else _scale(store, new, wanted)
    sizes = old_scale_down(replicas, unavailable, (_size(new), _available(new)),
                           [(_size(rs), _available(rs)) for rs in old])
    for rs, size in zip(old, sizes):
        _scale(store, rs, size)
    return new


def _recreate(store, deploy: dict, new: dict | None, old: list[dict]) -> dict | None:
    for rs in old:
        _scale(store, rs, 0)
    old_uids = {rs["metadata"]["uid"] for rs in old}
    if any((controller_of(p) or {}).get("uid") in old_uids for p in store.list("pods", deploy["metadata"]["namespace"])
           if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")):
        return new  # the old pods are still stopping
    replicas = deploy["spec"].get("replicas", 1)
    return _create_replicaset(store, deploy, replicas) if new is None else _scale(store, new, replicas)


def _create_replicaset(store, deploy: dict, replicas: int) -> dict:
    meta, spec = deploy["metadata"], deploy["spec"]
    pth = template_hash(spec["template"])
    labels = {**(spec["template"]["metadata"].get("labels") or {}), HASH_LABEL: pth}
    selector = copy.deepcopy(spec["selector"])
    selector.setdefault("matchLabels", {})[HASH_LABEL] = pth
    template = copy.deepcopy(spec["template"])
    template["metadata"]["labels"] = labels
    return store.create("replicasets", {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": f"{meta['name']}-{pth}", "namespace": meta["namespace"], "labels": labels,
                     "ownerReferences": [controller_ref(deploy)]},
        "spec": {"replicas": replicas, "selector": selector, "template": template},
    }, meta["namespace"])


def _scale(store, rs: dict, replicas: int) -> dict:
    if _size(rs) == replicas:
        return rs
    return store.patch("replicasets", rs["metadata"]["namespace"], rs["metadata"]["name"],
                       {"spec": {"replicas": replicas}}, MERGE)


def _trim_history(store, deploy: dict, old: list[dict]) -> None:
    """Old ReplicaSets with no pods left, beyond revisionHistoryLimit, oldest first, are deleted."""
    idle = [rs for rs in old if not _size(rs) and not (rs.get("status") or {}).get("replicas")]
    for rs in idle[: max(0, len(idle) - deploy["spec"].get("revisionHistoryLimit", 10))]:
        store.delete("replicasets", rs["metadata"]["namespace"], rs["metadata"]["name"])


def _deployment_status(store, deploy: dict, new: dict | None, old: list[dict]) -> None:
    every = ([new] if new else []) + old
    every = [store.get("replicasets", rs["metadata"]["namespace"], rs["metadata"]["name"]) for rs in every]
    statuses = [rs.get("status") or {} for rs in every]
    available = sum(s.get("availableReplicas", 0) for s in statuses)
    status = {
        "observedGeneration": deploy["metadata"].get("generation", 1),
        "replicas": sum(s.get("replicas", 0) for s in statuses),
        "updatedReplicas": statuses[0].get("replicas", 0) if new else 0,
        "readyReplicas": sum(s.get("readyReplicas", 0) for s in statuses),
        "availableReplicas": available,
    }
    missing = deploy["spec"].get("replicas", 1) - available
    if missing > 0:
        status["unavailableReplicas"] = missing
    if deploy.get("status") != status:
        store.update_status("deployments", deploy["metadata"]["namespace"], deploy["metadata"]["name"], status)


def _size(rs: dict) -> int:
    return rs["spec"].get("replicas", 1)


def _available(rs: dict) -> int:
    return (rs.get("status") or {}).get("availableReplicas", 0)


def _scaled(value, replicas: int, rounding) -> int:
    text = str(value)
    return int(rounding(int(text[:-1]) * replicas / 100)) if text.endswith("%") else int(text)


# ---- ReplicaSets ----------------------------------------------------------------------------

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
    want = _size(rs)
    for _ in range(want - len(pods)):
        pods.append(_create_pod(store, rs))
    if len(pods) > want:
        doomed = pods_to_delete(pods, len(pods) - want)
        for pod in doomed:
            store.delete("pods", ns, pod["metadata"]["name"])
        pods = [p for p in pods if p not in doomed]
    ready = sum(1 for p in pods if _is_ready(p))
    status = {"replicas": len(pods), "readyReplicas": ready, "availableReplicas": ready,
              "observedGeneration": rs["metadata"].get("generation", 1)}
    if rs.get("status") != status:
        store.update_status("replicasets", ns, rs["metadata"]["name"], status)


def _adopt(store, rs: dict, pod: dict) -> dict:
    refs = list(pod["metadata"].get("ownerReferences") or []) + [controller_ref(rs)]
    return store.patch("pods", pod["metadata"]["namespace"], pod["metadata"]["name"],
                       {"metadata": {"ownerReferences": refs}}, MERGE)


def _create_pod(store, rs: dict) -> dict:
    template = copy.deepcopy(rs["spec"]["template"])
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
