"""Layer 2, Endpoints: EndpointSlice readiness, the selector against the pods (nearest miss),
and port agreement between the Service and its backends. Judged on API facts only."""

from __future__ import annotations

from dataclasses import dataclass

from netdoctor.judge.common import failed, passed, skip
from netdoctor.model import CheckResult, Evidence, State


def judge(ev: Evidence) -> list[CheckResult]:
    if ev.facts.service is None or ev.facts.service.external_name:
        reason = "the target is not behind a Service" if ev.facts.service is None else \
            "an ExternalName Service has no endpoints: DNS answers a CNAME (see DNS)"
        return [skip(i, reason) for i in ("ND-EP-001", "ND-EP-002", "ND-EP-003")]
    return [_ready(ev), _selector(ev), _ports(ev)]


def _ready(ev: Evidence) -> CheckResult:
    """Ready endpoints, counted once for the message, the cause's text and the evidence alike.
    Terminating endpoints are a rollout's or a scale-down's leftovers: they are counted and shown,
    never required to be ready."""
    f = ev.facts
    endpoints = list({e.ip: e for s in f.slices or () for e in s.endpoints}.values())
    lines = [f"{len(f.slices or ())} EndpointSlice(s)"] + [_describe(e) for e in endpoints]
    if not endpoints:
        return failed("ND-EP-001", "no-endpoints", "no endpoints", lines)
    count = _Count.of(endpoints, f.service.publish_not_ready_addresses)
    params = count.params()
    if count.usable and count.usable == count.current:
        return passed("ND-EP-001", count.text(), lines)
    if count.usable:
        return failed("ND-EP-001", "partly-ready", count.text(), lines, params, State.WARN)
    cause = "terminating" if count.current == 0 else "none-ready"
    return failed("ND-EP-001", cause, count.text(), lines, params)


@dataclass(frozen=True)
class _Count:
    total: int
    usable: int  # ready, or serving where the Service publishes not-ready addresses
    terminating: int

    @classmethod
    def of(cls, endpoints, publish_not_ready: bool) -> _Count:
        usable = sum(1 for e in endpoints if not e.terminating and (e.ready or (publish_not_ready and e.serving)))
        return cls(len(endpoints), usable, sum(1 for e in endpoints if e.terminating))

    @property
    def current(self) -> int:
        """Endpoints that are not on their way out."""
        return self.total - self.terminating

    def text(self) -> str:
        leaving = f", {self.terminating} terminating" if self.terminating else ""
        return f"{self.usable}/{self.current} endpoints ready{leaving}"

    def params(self) -> dict[str, str]:
        return {"ready": str(self.usable), "current": str(self.current), "terminating": str(self.terminating),
                "not_ready": str(self.current - self.usable)}


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
        numbers = sorted({port for _, port in ev.facts.backend_ports}) or [ev.facts.target_port]
        mapped = ", ".join(map(str, numbers)) + (f" (named {sp.target_port}, per pod)" if sp and len(numbers) > 1 else "")
        detail = f"port {sp.port}/{sp.protocol} → {mapped}" if sp else "no port to compare"
        return passed("ND-EP-003", detail)
    first = problems[0]
    return failed("ND-EP-003", first.cause, first.detail, [p.detail for p in problems], {"detail": first.detail})
