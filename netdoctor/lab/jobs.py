"""The lab's job controller and TTL-after-finished controller, for Jobs that start no pods (what
netdoctor's run owners are: parallelism 0).

Called by the lab controller on every reconcile, with the time. Like kube-controller-manager's:
- a Job gets status.startTime when first seen unsuspended, and again when resumed; a suspended Job
  has the Suspended condition and its activeDeadlineSeconds does not run;
- once startTime + activeDeadlineSeconds has passed, the Job gets the FailureTarget and Failed
  conditions, reason DeadlineExceeded (both at once: it has no pods to wait for);
- a pod whose controller reference names an unfinished Job whose selector does not match it is
  released (the reference removed), as the job controller's ClaimPods does;
- a finished Job (Complete or Failed) with ttlSecondsAfterFinished is deleted that long after its
  condition's lastTransitionTime, with foreground propagation: its dependents go with it.
Not modelled: a Job's own pods (with parallelism above 0 it stays active with none), adoption of
orphans, completions, backoffLimit, pod failure policies.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from netdoctor.lab import workloads
from netdoctor.lab.api.status import ApiError
from netdoctor.labels import from_label_selector

DEADLINE_EXCEEDED = ("DeadlineExceeded", "Job was active longer than specified deadline")
_FINISHED = ("Complete", "Failed")


def reconcile_jobs(store, now: datetime) -> None:
    jobs = store.list("jobs")
    for job in jobs:
        if finished_at(job) is None:
            _sync(store, job, now)
        else:
            _expire(store, job, now)
    active = {job["metadata"]["uid"]: job for job in store.list("jobs") if finished_at(job) is None}
    if active:
        _release_pods(store, active)


def finished_at(job: dict) -> datetime | None:
    """When the Job finished (its Complete or Failed condition's lastTransitionTime); None if it has not."""
    times = [_parse(c["lastTransitionTime"]) for c in (job.get("status") or {}).get("conditions") or []
             if c.get("type") in _FINISHED and c.get("status") == "True"]
    return min(times) if times else None


def _sync(store, job: dict, now: datetime) -> None:
    spec, status = job["spec"], dict(job.get("status") or {})
    conditions = list(status.get("conditions") or [])
    stamp = _format(now)
    if spec.get("suspend"):
        conditions, _ = _ensure(conditions, "Suspended", "True", ("JobSuspended", "Job suspended"), stamp)
    else:
        status.setdefault("startTime", stamp)
        conditions, resumed = _ensure(conditions, "Suspended", "False", ("JobResumed", "Job resumed"), stamp)
        if resumed:
            status["startTime"] = stamp
        deadline = spec.get("activeDeadlineSeconds")
        if deadline is not None and _parse(status["startTime"]) + timedelta(seconds=deadline) <= now:
            conditions += [_condition("FailureTarget", "True", DEADLINE_EXCEEDED, stamp),
                           _condition("Failed", "True", DEADLINE_EXCEEDED, stamp)]
    status.update(ready=0, terminating=0, uncountedTerminatedPods={})
    if conditions:
        status["conditions"] = conditions
    _write_status(store, job, status)


def _ensure(conditions: list[dict], kind: str, state: str, why: tuple[str, str], stamp: str) -> tuple[list[dict], bool]:
    """ensureJobConditionStatus: set the condition (a False one only where it exists); whether it changed."""
    current = next((c for c in conditions if c["type"] == kind), None)
    if current is None:
        return (conditions + [_condition(kind, state, why, stamp)], True) if state != "False" else (conditions, False)
    if (current["status"], current.get("reason"), current.get("message")) == (state, *why):
        return conditions, False
    return [_condition(kind, state, why, stamp) if c is current else c for c in conditions], True


def _condition(kind: str, state: str, why: tuple[str, str], stamp: str) -> dict:
    return {"type": kind, "status": state, "lastProbeTime": stamp, "lastTransitionTime": stamp,
            "reason": why[0], "message": why[1]}


def _write_status(store, job: dict, status: dict) -> None:
    meta = job["metadata"]
    try:
        store.update_status("jobs", meta["namespace"], meta["name"], status)
    except ApiError as exc:
        if exc.code != 404:  # deleted meanwhile: nothing to update
            raise


def _expire(store, job: dict, now: datetime) -> None:
    """The TTL-after-finished controller."""
    ttl = job["spec"].get("ttlSecondsAfterFinished")
    if ttl is None or finished_at(job) + timedelta(seconds=ttl) > now:
        return
    meta = job["metadata"]
    try:
        store.delete("jobs", meta["namespace"], meta["name"], "Foreground")
    except ApiError as exc:
        if exc.code != 404:
            raise


def _release_pods(store, jobs: dict[str, dict]) -> None:
    for pod in store.list("pods"):
        meta = pod["metadata"]
        ref = workloads.controller_of(pod) or {}
        job = jobs.get(ref.get("uid")) if ref.get("kind") == "Job" else None
        if job is None or job["metadata"]["namespace"] != meta["namespace"]:
            continue
        if from_label_selector(job["spec"].get("selector")).matches(meta.get("labels") or {}):
            continue
        kept = [r for r in meta["ownerReferences"] if r.get("uid") != ref["uid"]]
        try:
            store.patch("pods", meta["namespace"], meta["name"], {"metadata": {"ownerReferences": kept or None}},
                        workloads.MERGE)
        except ApiError as exc:
            if exc.code != 404:
                raise


def _format(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
