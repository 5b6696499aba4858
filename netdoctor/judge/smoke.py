"""A smoke file's expectations judged: did each hold, on what evidence, and why not.

Called by check.smoke_command after the shared run, with each expectation's Evidence and, for
Services and flows, the check's Report (judge.verdict.judge: its diagnosis names the layer, the
cause and the hop). No I/O.

- healthy: the check's state (PASS, or WARN: warnings allowed).
- allow: every connection of the flow got through (to each backend pod IP and to the Service IP).
- deny: no connection reached the destination (none connected, none refused by the pod itself:
  its own reset means the packet got there). Where a hop path shows the packet dropped (or
  rejected) by a NetworkPolicy, the denial is `confirmed` with that evidence; a denial the policy
  engine does not explain is a WARN (something else blocks the flow), with its diagnosis.
- resolve: an answer with addresses, through the source's resolv.conf.
"""

from __future__ import annotations

from dataclasses import replace

from netdoctor.catalog import Catalog
from netdoctor.judge import hops
from netdoctor.judge.diagnose import common_params
from netdoctor.judge.policy import describe
from netdoctor.model import (
    Diagnosis, Evidence, ExpectKind, Expectation, ExpectationResult, Expect, HopPath, Layer, PathOutcome, Report, State,
    TcpConnect,
)
from netdoctor.observations import DnsOutcome, RefusalKind, TcpOutcome

POLICY_CAUSES = frozenset({"policy-ingress", "policy-egress", "local-policy-drop", "policy-reject"})
_THROUGH = (TcpOutcome.CONNECTED,)


def healthy(exp: Expectation, report: Report) -> ExpectationResult:
    state = report.state if report.state is not State.SKIP else State.ERROR
    if state is State.PASS:
        return ExpectationResult(exp, state, report.diagnosis.headline, reports=(report,))
    where = f" at {report.diagnosis.layer.value}" if report.diagnosis.layer else ""
    return ExpectationResult(exp, state, f"the check is {state.value.upper()}{where}", reports=(report,),
                             diagnosis=report.diagnosis)


def flow(exp: Expectation, judged: list[tuple[Evidence, Report]]) -> ExpectationResult:
    """A flow to each destination (a Service or workload: one; a selector: each pod)."""
    results = [_deny(exp, ev, report) if exp.kind is ExpectKind.DENY else _allow(exp, ev, report)
               for ev, report in judged]
    worst = max(results, key=lambda r: r.state.rank)
    reports = tuple(report for _, report in judged)
    if len(results) == 1:
        return replace(worst, reports=reports)
    evidence = tuple(f"{r.reports[0].target}: {r.message}" for r in results)
    confirmed = [r.confirmed for r in results if r.confirmed]
    return replace(worst, evidence=evidence + worst.evidence, reports=reports,
                   confirmed=confirmed[0] if len(confirmed) == len(results) else worst.confirmed)


def _traffic(ev: Evidence) -> list[tuple[object, list]]:
    """The flow's connection steps (not those expected to drop by design) and their results."""
    found = []
    for step, obs in ((s, ev.observed(s.key)) for s in ev.plan.steps if isinstance(s.action, TcpConnect)):
        if step.expect is Expect.DROPPED:
            continue
        found.append((step, list(obs.result or ()) if obs and obs.error is None else None))
    return found


def _counts(steps) -> tuple[int, int, int]:
    """(connections made, connected, errored steps)."""
    made = sum(len(r) for _, r in steps if r is not None)
    through = sum(1 for _, r in steps if r is not None for t in r if t.outcome in _THROUGH)
    errored = sum(1 for _, r in steps if r is None or any(t.outcome is TcpOutcome.ERROR for t in r))
    return made, through, errored


def _allow(exp: Expectation, ev: Evidence, report: Report) -> ExpectationResult:
    steps = _traffic(ev)
    made, through, errored = _counts(steps)
    lines = _lines(steps)
    if not steps:
        return ExpectationResult(exp, State.ERROR, "nothing to connect to (no backend pod)", lines,
                                 reports=(report,), diagnosis=report.diagnosis)
    if through == made and not errored:
        return ExpectationResult(exp, State.PASS, f"allowed: {through} of {_n(made)} got through", lines,
                                 reports=(report,))
    blocked = sum(1 for _, r in steps if r for t in r if t.outcome not in (*_THROUGH, TcpOutcome.ERROR))
    if not blocked:  # only errors besides what got through: an error is no evidence of a block
        return ExpectationResult(exp, State.ERROR, "the probes failed: no evidence either way", lines,
                                 reports=(report,), diagnosis=report.diagnosis)
    return ExpectationResult(exp, State.FAIL, f"blocked: {through} of {_n(made)} got through", lines,
                             reports=(report,), diagnosis=_failed_diagnosis(report))


def _deny(exp: Expectation, ev: Evidence, report: Report) -> ExpectationResult:
    steps = _traffic(ev)
    made, through, errored = _counts(steps)
    lines = _lines(steps)
    if not steps:
        return ExpectationResult(exp, State.ERROR, "nothing to connect to (no backend pod)", lines, reports=(report,))
    reached = [s for s, r in steps if r and any(t.outcome is TcpOutcome.REFUSED for t in r)
               and hops.refusal(ev, s).kind is RefusalKind.POD]
    if through or reached:
        what = f"{through} of {_n(made)} got through" if through else \
            f"the pod itself refused {len(reached)} connection(s): the packets reached it"
        return ExpectationResult(exp, State.FAIL, f"allowed: {what}", lines + _engine(ev), reports=(report,),
                                 diagnosis=_leak_diagnosis(ev, report))
    if errored:  # an error is never evidence: that connection might have got through
        return ExpectationResult(exp, State.ERROR, f"{errored} of {len(steps)} probes failed: no evidence the flow "
                                 "is denied there", lines, reports=(report,), diagnosis=report.diagnosis)
    confirmed = _confirmation(report)
    engine = _engine(ev)
    denied_by_policy = bool(ev.facts.policy) and not any(f.verdict.allowed for f in ev.facts.policy)
    if ev.facts.policy and not denied_by_policy:
        return ExpectationResult(exp, State.WARN, f"blocked, but no NetworkPolicy denies it: {_n(made)} got no "
                                 "answer", lines + engine, confirmed, (report,), _failed_diagnosis(report))
    return ExpectationResult(exp, State.PASS, f"denied: none of {_n(made)} got through", lines + engine,
                             confirmed, (report,))


def _n(count: int) -> str:
    return f"{count} connection" + ("" if count == 1 else "s")


def _lines(steps) -> tuple[str, ...]:
    out = []
    for step, results in steps:
        shown = "the probe failed" if results is None else ", ".join(t.outcome.value for t in results) or "nothing"
        out.append(f"{step.title or step.key}: {shown}")
    return tuple(out)


def _engine(ev: Evidence) -> tuple[str, ...]:
    flows = ev.facts.policy
    if not flows:
        return ("policy engine: " + (ev.facts.policy_error or "no backend evaluated"),) if flows is None else ()
    return tuple(f"policy engine: {line}" for f in flows for line in describe(f))


def _confirmation(report: Report) -> str:
    """The capture's word on a denial: the policy hop that dropped (or rejected) it, or why the
    capture cannot confirm it."""
    paths = [p for p in report.paths if p.outcome is not PathOutcome.DELIVERED]
    policy = next((p for p in paths if p.cause in POLICY_CAUSES), None)
    if policy is not None:
        return f"confirmed by capture: {policy.summary}{_at(policy)}"
    if not report.paths:
        return "not confirmed by capture: " + ("no capture" if not report.capture.points else "no packet of it seen")
    telling = paths[0] if paths else report.paths[0]
    return f"not confirmed by capture ({telling.cause}): {telling.summary}"


def _at(path: HopPath) -> str:
    if path.at is None or path.at >= len(path.hops):
        return ""
    return f" (lost at {path.hops[path.at].label})"


def _failed_diagnosis(report: Report) -> Diagnosis:
    return report.diagnosis


def _leak_diagnosis(ev: Evidence, report: Report) -> Diagnosis:
    """Why a flow that should be denied got through: the check's own verdict when it failed (the
    policies deny it but the CNI does not enforce them), else the policy engine's word."""
    if report.state is State.FAIL:
        return report.diagnosis
    flows = ev.facts.policy or ()
    if flows and all(f.verdict.allowed for f in flows):
        open_ = [f"{f.backend}: {d.direction.value.lower()} at {d.subject} {d.state.value}" +
                 (f" by {', '.join(map(str, d.allowing))}" if d.allowing else "")
                 for f in flows for d in (f.verdict.egress, f.verdict.ingress)]
        return Diagnosis(State.FAIL, Layer.POLICY, "ND-POL-001", None,
                         "no NetworkPolicy denies this flow: " + "; ".join(open_),
                         "add a NetworkPolicy that isolates the destination (or the source) and leaves this flow out",
                         (f"kubectl -n {ev.facts.namespace} get networkpolicy",))
    return report.diagnosis


def lookup(exp: Expectation, ev: Evidence, catalog: Catalog) -> ExpectationResult:
    obs = ev.observed(ev.plan.steps[0].key)
    if obs is None or obs.error is not None or not obs.result:
        why = obs.error if obs and obs.error else "the lookup did not run"
        return ExpectationResult(exp, State.ERROR, f"could not look it up: {why}", obs.log if obs else ())
    lines = tuple(f"{r.name} @{r.server}: {r.outcome.value}" + (f" {', '.join(r.addresses)}" if r.addresses else "")
                  for r in obs.result)
    answered = [r for r in obs.result if r.outcome is DnsOutcome.ANSWER and r.addresses]
    if answered:
        return ExpectationResult(exp, State.PASS, f"resolves to {', '.join(answered[-1].addresses)} "
                                 f"(as {answered[-1].name})", lines)
    last = obs.result[-1]
    path = _path(ev, catalog)
    lost = last.outcome in (DnsOutcome.TIMEOUT, DnsOutcome.ERROR)
    cause = "dns-unanswered" if lost else last.outcome.value
    headline = f"{last.name} @{last.server}: {last.outcome.value}" + (f" ({path.summary})" if path and lost else "")
    diagnosis = Diagnosis(State.FAIL, Layer.DNS, "ND-DNS-002", cause, headline, path=path if lost else None,
                          commands=(f"kubectl -n kube-system get pods -l k8s-app=kube-dns -o wide",))
    return ExpectationResult(exp, State.FAIL, f"does not resolve: {last.outcome.value}", lines, diagnosis=diagnosis)


def cidr(exp: Expectation, ev: Evidence, catalog: Catalog) -> ExpectationResult:
    """A flow to an address outside the cluster's objects: connected or not, and the hop path."""
    steps = _traffic(ev)
    made, through, errored = _counts(steps)
    lines = _lines(steps)
    path = _path(ev, catalog)
    if errored:
        return ExpectationResult(exp, State.ERROR, "the probe failed: no evidence either way", lines)
    refused = any(t.outcome is TcpOutcome.REFUSED for _, r in steps for t in r or ())
    answered = through or (refused and hops.refusal(ev, steps[0][0]).kind is RefusalKind.POD)
    where = f" ({path.summary})" if path else ""
    if exp.kind is ExpectKind.ALLOW:
        if through:
            return ExpectationResult(exp, State.PASS, f"allowed: {through} of {_n(made)} got through", lines)
        return ExpectationResult(exp, State.FAIL, f"blocked{where}", lines, diagnosis=Diagnosis(
            State.FAIL, Layer.POD, "ND-POD-001", path.cause if path else None, f"blocked{where}", path=path))
    if answered:
        return ExpectationResult(exp, State.FAIL, "allowed: the address answered", lines, diagnosis=Diagnosis(
            State.FAIL, Layer.POLICY, "ND-POL-001", None, "no egress NetworkPolicy of the source denies it",
            commands=(f"kubectl -n {ev.facts.source_namespace} get networkpolicy",)))
    confirmed = f"confirmed by capture: {path.summary}" if path and path.cause in POLICY_CAUSES else \
        f"not confirmed by capture: {path.summary if path else 'no packet of it seen'}"
    return ExpectationResult(exp, State.PASS, f"denied: none of {_n(made)} got through", lines, confirmed)


def _path(ev: Evidence, catalog: Catalog) -> HopPath | None:
    found = hops.paths(ev)
    if not found or catalog.hops is None:
        return None
    p = found[0]
    return replace(p, summary=catalog.render(catalog.hops.id, p.cause, common_params(ev.facts) | dict(p.params)).summary)
