"""Layer 6, NetworkPolicy: which policies isolate the source (egress) and the backends (ingress),
whether one allows this flow (the engine's verdict from plan time), and whether live traffic agrees."""

from __future__ import annotations

from netdoctor.judge.common import failed, names, passed, skip
from netdoctor.judge.paths import attempts
from netdoctor.model import CheckResult, Evidence, Facts, PolicyFlow, State
from netdoctor.observations import TcpOutcome


def judge(ev: Evidence) -> list[CheckResult]:
    f = ev.facts
    if f.policy is None:
        message = f.policy_error or "policies were not evaluated"
        return [failed("ND-POL-001", "unevaluated", message, params={"error": message}, state=State.ERROR),
                skip("ND-POL-002", "no policy verdict to compare with")]
    if not f.policy:
        return [skip("ND-POL-001", "no backend to evaluate"), skip("ND-POL-002", "no backend to evaluate")]
    live = _live(ev)
    return [_allows(f, live), _agrees(ev, f.policy, live)]


def _live(ev: Evidence) -> dict[str, TcpOutcome]:
    """Backend name → what the source saw connecting to its pod IP."""
    return {a.backend: a.outcome for a in attempts(ev, "ND-POD-001")[0]}


def describe(flow: PolicyFlow) -> list[str]:
    lines = []
    for d in (flow.verdict.egress, flow.verdict.ingress):
        line = f"{flow.backend}: {d.direction.value.lower()} at {d.subject}: {d.state.value}"
        if d.isolating:
            line += f" (isolated by {', '.join(d.isolating)})"
        if d.allowing:
            line += f"; allowed by {', '.join(map(str, d.allowing))}"
        if d.nearest_miss:
            line += f"; nearest miss {d.nearest_miss.rule}: " + "; ".join(map(str, d.nearest_miss.mismatches))
        lines.append(line)
    return lines


def _reasons(flow: PolicyFlow) -> str:
    v = flow.verdict
    d = v.egress if not v.egress.allowed else v.ingress
    miss = d.nearest_miss
    found = f"nearest miss {miss.rule}: " + "; ".join(map(str, miss.mismatches)) if miss else "no rule for this direction"
    return f"{', '.join(d.isolating)} ({found})"


def _allows(facts: Facts, live: dict[str, TcpOutcome]) -> CheckResult:
    flows = facts.policy
    lines = [line for flow in flows for line in describe(flow)]
    denied = [f for f in flows if not f.verdict.allowed]
    if not denied:
        return passed("ND-POL-001", f"the policies allow the flow to {len(flows)} backend(s)", lines)
    first = denied[0]
    cause = "egress-denied" if not first.verdict.egress.allowed else "ingress-denied"
    passed_anyway = all(live.get(f.backend) is TcpOutcome.CONNECTED for f in denied)
    state = State.WARN if passed_anyway else State.FAIL
    return failed("ND-POL-001", cause, f"denied to {names(f.backend for f in denied)}", lines,
                  {"reasons": _reasons(first), **_denied_flow(facts, first)}, state)


def _denied_flow(f: Facts, flow: PolicyFlow) -> dict[str, str]:
    """The denied backend and its own port, for `netdoctor policy explain --to NS/POD --port P`."""
    port = dict(f.backend_ports).get(flow.backend, f.target_port)
    protocol = f.service_port.protocol if f.service_port else "TCP"
    return {"backend_ref": f"{f.namespace}/{flow.backend}", **({"proto_port": f"{protocol}/{port}"} if port else {})}


def _agrees(ev: Evidence, flows: tuple[PolicyFlow, ...], live: dict[str, TcpOutcome]) -> CheckResult:
    if not live:
        return skip("ND-POL-002", "no live connection to compare with")
    leaks = [f.backend for f in flows if not f.verdict.allowed and live.get(f.backend) is TcpOutcome.CONNECTED]
    if leaks:
        return failed("ND-POL-002", "not-enforcing", f"denied, yet connected to {names(leaks)}",
                      [f"{b}: policy denies, connection succeeded" for b in leaks], {"pods": names(leaks)})
    same_node = {a.backend: a.outcome for a in attempts(ev, "ND-NODE-002")[0] if a.node == a.backend_node}
    dropped = [f.backend for f in flows if f.verdict.allowed and live.get(f.backend) is TcpOutcome.TIMEOUT
               and same_node.get(f.backend) is TcpOutcome.TIMEOUT]
    if dropped:
        return failed("ND-POL-002", "blocked-though-allowed", f"allowed, yet {names(dropped)} time out even from their own node",
                      [f"{b}: policy allows, connection timed out from the same node" for b in dropped],
                      {"pods": names(dropped)})
    return passed("ND-POL-002", "live traffic agrees with the policies")
