"""Layer 2, Endpoints: EndpointSlice readiness, the selector against the pods (nearest miss),
and port agreement between the Service and its backends. Judged on API facts only."""

from __future__ import annotations

from netdoctor.judge.common import failed, passed, skip
from netdoctor.model import CheckResult, Evidence, State


def judge(ev: Evidence) -> list[CheckResult]:
    if ev.facts.service is None:
        reason = "the target is not behind a Service"
        return [skip(i, reason) for i in ("ND-EP-001", "ND-EP-002", "ND-EP-003")]
    return [_ready(ev), _selector(ev), _ports(ev)]


def _ready(ev: Evidence) -> CheckResult:
    f = ev.facts
    endpoints = [e for s in f.slices or () for e in s.endpoints]
    lines = [f"{len(f.slices or ())} EndpointSlice(s)"] + [_describe(e) for e in endpoints]
    if not endpoints:
        return failed("ND-EP-001", "no-endpoints", "no endpoints", lines)
    usable = [e for e in endpoints if e.ready or (f.service.publish_not_ready_addresses and e.serving)]
    if usable:
        state = State.PASS if len(usable) == len(endpoints) else State.WARN
        message = f"{len(usable)}/{len(endpoints)} endpoints ready"
        return passed("ND-EP-001", message, lines) if state is State.PASS else failed(
            "ND-EP-001", "none-ready", message, lines, {"count": str(len(endpoints) - len(usable))}, State.WARN)
    cause = "terminating" if all(e.terminating for e in endpoints) else "none-ready"
    return failed("ND-EP-001", cause, f"0/{len(endpoints)} endpoints ready", lines, {"count": str(len(endpoints))})


def _describe(e) -> str:
    flags = [w for w, on in (("ready", e.ready), ("serving", e.serving), ("terminating", e.terminating)) if on]
    return f"{e.ip} ({e.pod_name or 'no pod'}): {', '.join(flags) or 'not ready'}"


def _selector(ev: Evidence) -> CheckResult:
    f = ev.facts
    if not f.service.selector:
        return skip("ND-EP-002", "the Service has no selector")
    selector = ",".join(f"{k}={v}" for k, v in f.service.selector)
    if f.backends:
        return passed("ND-EP-002", f"{selector} matches {len(f.backends)} pod(s)")
    if f.selector_misses:
        nearest = "; ".join(f"pod {m.pod} has {m.has}" for m in f.selector_misses)
    else:
        nearest = f"no pod in namespace {f.namespace} comes close"
    return failed("ND-EP-002", "selector-mismatch", f"selector {selector} matches no pod",
                  [f"selector {selector}", f"nearest miss: {nearest}"], {"nearest": nearest})


def _ports(ev: Evidence) -> CheckResult:
    problems = ev.facts.port_problems
    if not problems:
        sp = ev.facts.service_port
        detail = f"port {sp.port}/{sp.protocol} → {ev.facts.target_port}" if sp else "no port to compare"
        return passed("ND-EP-003", detail)
    first = problems[0]
    return failed("ND-EP-003", first.cause, first.detail, [p.detail for p in problems], {"detail": first.detail})
