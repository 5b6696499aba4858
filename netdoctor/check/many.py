"""Many targets in one run: `check TARGET…`, `check --all -n NS`, `check --all -A [-l SELECTOR]`.

Called by check.command when more than one target is asked for (and by the smoke command, which
runs its expectations the same way). Resolves the targets a few at a time, then runs every plan on
one shared set of probes (probe.runner.run_many: one probe per source namespace, identity and
node serves every target), judges each target on its own and hands back the Reports.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from netdoctor.errors import ClusterError, UsageError
from netdoctor.model import Facts, Kind, Plan, Ref, Report

RESOLVE_BOUND = 4  # targets resolved at once (each reads a handful of API objects)
STEP_WORKERS = 48  # steps running at once across every target of a run


@dataclass(frozen=True)
class Target:
    """A target of a shared run: what resolve learned, the plan, and when its work began."""

    facts: Facts
    plan: Plan
    started: float


def all_services(kube, namespace: str | None, selector: str | None) -> list[Ref]:
    """The Services of a namespace (None: of every namespace), filtered by a label selector,
    as targets in their namespaces (sorted)."""
    from netdoctor.labels import SelectorError, parse

    if selector is not None:
        try:
            parse(selector)
        except SelectorError as exc:
            raise UsageError(f"-l {selector!r}: {exc}") from None
    found = kube.list_objects("Service", namespace, selector)
    refs = sorted((Ref(Kind.SERVICE, o["metadata"]["name"], o["metadata"]["namespace"]) for o in found),
                  key=lambda r: (r.namespace, r.name))
    if not refs:
        where = f"namespace {namespace!r}" if namespace else "any namespace"
        raise ClusterError(f"no Service in {where}" + (f" matches -l {selector}" if selector else ""),
                           hint=f"kubectl get svc {'-n ' + namespace if namespace else '-A'}")
    return refs


def resolve_all(kube, requests: list) -> list[tuple[Facts, float]]:
    """Each request's Facts (with when its resolve began), a few at a time; the first error ends
    the run before anything is created."""
    from netdoctor.check import resolve

    def one(request):
        began = time.monotonic()
        return resolve.resolve(kube, request), began

    with ThreadPoolExecutor(max_workers=RESOLVE_BOUND) as pool:
        return list(pool.map(one, requests))


def probe_and_judge(kube, targets: list[Target], checks, options, progress, decoding=None) -> tuple[tuple[Report, ...], tuple]:
    """Every target's plan on shared probes, then each judged on its own: the Reports (duration:
    from the target's resolve to its verdict) and the runs' results (kept probes, captures)."""
    from netdoctor.judge import coverage, paths
    from netdoctor.judge.verdict import judge
    from netdoctor.model import Evidence
    from netdoctor.probe import runner

    jobs = tuple(runner.Job(t.plan, t.facts) for t in targets)
    results = runner.run_many(kube, jobs, options, progress, coverage.uncovered, paths.unsettled, decoding)
    reports = []
    for target, result in zip(targets, results):
        evidence = Evidence(target.facts, target.plan, result.observations, result.captures, result.probes)
        took = time.monotonic() - target.started
        reports.append(judge(evidence, checks, took, datetime.now(timezone.utc) - timedelta(seconds=took)))
    return tuple(reports), results
