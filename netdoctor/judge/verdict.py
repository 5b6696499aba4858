"""`judge(evidence)`: the whole verdict, a Report. No I/O.

Called by check.command after the probe stage. Each layer module returns its CheckResults; this module
applies the runbook (order, prerequisites → SKIP with the reason), fills titles from the catalog,
and `diagnose` names the first broken layer, the most likely cause and the next commands.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from netdoctor.catalog import Catalog
from netdoctor.judge import dns, endpoints, hops, paths, policy, target
from netdoctor.judge.cluster_kind import from_captures
from netdoctor.judge.common import skip, unsaid
from netdoctor.judge.diagnose import common_params, diagnose, mark_consequences
from netdoctor.model import (
    CaptureStatus, CheckResult, Diagnosis, Evidence, HopPath, Layer, LayerResult, PathOutcome, Report, State,
)

LAYER_JUDGES = {
    Layer.TARGET: target.judge,
    Layer.DNS: dns.judge,
    Layer.ENDPOINTS: endpoints.judge,
    Layer.POD: paths.judge_pod,
    Layer.SERVICE: paths.judge_service,
    Layer.NODE: paths.judge_node,
    Layer.POLICY: policy.judge,
}

# The check IDs each layer judge can report, in display order (the catalog test compares these).
CHECK_IDS = {
    Layer.TARGET: ("ND-TGT-001", "ND-TGT-002", "ND-TGT-003"),
    Layer.DNS: ("ND-DNS-001", "ND-DNS-002", "ND-DNS-003", "ND-DNS-004", "ND-DNS-005"),
    Layer.ENDPOINTS: ("ND-EP-001", "ND-EP-002", "ND-EP-003"),
    Layer.POD: ("ND-POD-001",),
    Layer.SERVICE: ("ND-SVC-001", "ND-SVC-002"),
    Layer.NODE: ("ND-NODE-001", "ND-NODE-002", "ND-NODE-003", "ND-NODE-004", "ND-NODE-005"),
    Layer.POLICY: ("ND-POL-001", "ND-POL-002"),
}


def judge(evidence: Evidence, catalog: Catalog, duration_s: float = 0.0, started_at: datetime | None = None,
          only: tuple[Layer, ...] | None = None) -> Report:
    """`only`: the layers the plan is about (a smoke file's flow); the others are SKIP."""
    layers: list[LayerResult] = []
    for definition in catalog.layers:
        broken = [r.layer for r in layers if r.layer in definition.requires and r.state is State.FAIL]
        title = definition.title
        if only is not None and definition.layer not in only:
            reason = "not part of this flow"
            checks = tuple(skip(i, reason) for i in CHECK_IDS[definition.layer])
            layers.append(LayerResult(definition.layer, title, State.SKIP, _titled(checks, catalog), reason))
            continue
        if broken:
            reason = f"prerequisite layer failed: {catalog.layer(broken[0]).title}"
            checks = tuple(skip(i, reason) for i in CHECK_IDS[definition.layer])
            layers.append(LayerResult(definition.layer, title, State.SKIP, _titled(checks, catalog), reason))
            continue
        checks = _with_steps(_titled(_run(definition.layer, evidence), catalog), evidence)
        layers.append(LayerResult(definition.layer, title, _layer_state(checks), checks, _skip_reason(checks)))
    facts = evidence.facts
    found = _rendered(hops.paths(evidence), catalog, evidence)
    diagnosis = diagnose(tuple(layers), catalog, facts)
    layers = mark_consequences(tuple(layers), diagnosis)
    return Report(
        target=str(facts.target),
        namespace=facts.namespace,
        source=facts.source,
        layers=layers,
        diagnosis=replace(diagnosis, path=_key_path(found, tuple(layers), diagnosis, evidence)),
        notes=evidence.plan.notes,
        sample=evidence.plan.sample,
        duration_s=duration_s,
        paths=found,
        capture=_capture_status(evidence),
        cluster=from_captures(facts.cluster, evidence.captures),
        started_at=started_at,
    )


def _rendered(found: tuple[HopPath, ...], catalog: Catalog, ev: Evidence) -> tuple[HopPath, ...]:
    if catalog.hops is None:
        return found
    base = common_params(ev.facts)
    return tuple(replace(p, summary=catalog.render(catalog.hops.id, p.cause, base | dict(p.params)).summary)
                 for p in found)


_UNINFORMATIVE = ("not-seen", "blind", "mtu-known")


def _key_path(found: tuple[HopPath, ...], layers: tuple[LayerResult, ...], d: Diagnosis, ev: Evidence) -> HopPath | None:
    """The path that shows the diagnosis: a failing one of the named check's steps, else of the
    failed checks in layer order; for a healthy check, the Service IP's (or a pod IP's) path."""
    by_step = {p.step_key: p for p in found}
    if d.state in (State.PASS, State.SKIP):
        return next((by_step[k] for k in ("svc:clusterip", *(s.key for s in ev.plan.steps)) if k in by_step), None)
    checks = [d.check_id] + [c.check_id for layer in layers for c in layer.checks if c.state in (State.FAIL, State.ERROR, State.WARN)]
    for informative in (True, False):
        for check_id in checks:
            failing = [p for step, _ in ev.runs(check_id) for p in (by_step.get(step.key),)
                       if p and p.outcome is not PathOutcome.DELIVERED and (p.cause not in _UNINFORMATIVE or not informative)]
            if failing:  # an answered failure says more than a silent one (ICMP errors are rate-limited)
                return next((p for p in failing if p.outcome not in _SILENT), failing[0])
    return next((p for p in found if p.outcome is not PathOutcome.DELIVERED and p.cause not in _UNINFORMATIVE), None)


_SILENT = (PathOutcome.DROPPED, PathOutcome.REPLY_LOST, PathOutcome.UNKNOWN)


def _capture_status(ev: Evidence) -> CaptureStatus:
    seen = tuple(c.point for c in ev.captures if not c.blind)
    blind = tuple(f"{c.point}: {c.blind}" for c in ev.captures if c.blind)
    offsets = {c.node: (c.clock_offset, c.clock_reference) for c in ev.captures if c.clock_reference}
    clocks = tuple(f"{node}'s clock is {abs(offset):.1f} s {'ahead of' if offset > 0 else 'behind'} {reference}'s "
                   f"(from the packets both captured): its packet times are read on {reference}'s clock"
                   for node, (offset, reference) in offsets.items())
    return CaptureStatus(ev.plan.capture, seen, blind, clocks)


def _run(layer: Layer, evidence: Evidence) -> tuple[CheckResult, ...]:
    """One layer's results; a bug in a layer judge becomes an ERROR result, not a traceback."""
    try:
        return tuple(LAYER_JUDGES[layer](evidence))
    except Exception as exc:  # noqa: BLE001 - reported as ERROR with the exception text
        return (CheckResult(CHECK_IDS[layer][0], State.ERROR, message=f"judging failed: {type(exc).__name__}: {exc}"),)


def _with_steps(checks: tuple[CheckResult, ...], evidence: Evidence) -> tuple[CheckResult, ...]:
    """Each result with the wall time its steps took, and an evidence line for each step judged on
    a second look (what the first showed while the probes were new)."""
    return tuple(replace(c, duration_s=sum(o.seconds for _, o in evidence.runs(c.check_id) if o),
                         evidence=(*c.evidence, *_second_looks(evidence, c.check_id))) for c in checks)


def _second_looks(evidence: Evidence, check_id: str) -> tuple[str, ...]:
    return tuple(f"{step.title or step.key}: judged on a second look; in the first, while the probes were new, "
                 f"{obs.set_aside}" for step, obs in evidence.runs(check_id) if obs and obs.set_aside)


def _titled(checks: tuple[CheckResult, ...], catalog: Catalog) -> tuple[CheckResult, ...]:
    """Each result with its catalog title, and its log cut to what its evidence does not say."""
    return tuple(replace(c, title=catalog.check(c.check_id).title, log=unsaid(c.evidence, c.log)) for c in checks)


def _layer_state(checks: tuple[CheckResult, ...]) -> State:
    return max((c.state for c in checks), key=lambda s: s.rank, default=State.SKIP)


def _skip_reason(checks: tuple[CheckResult, ...]) -> str:
    if checks and all(c.state is State.SKIP for c in checks):
        return checks[0].message
    return ""
