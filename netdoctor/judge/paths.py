"""Layers 3–5, the data path: source → each pod IP, source → Service IP (and NodePort), and every
node's probe → each backend (TCP or UDP, Service IP, small and DF-sized pings).

A connection reached its backend only when it connected or the backend itself reset it: the
captures tell the pod's reset from a node's reject (a NetworkPolicy enforcer or firewall answering
for the pod, e.g. kube-router), which the probe's connect() cannot ("connection refused" both);
without capture who refused is unknown, and an unknown refusal proves nothing. Steps the policies
are expected to block are left to the policy layer. A UDP port that answers nothing gives no
evidence either way (open|filtered): where it answers some probe, silence is a loss like a TCP
timeout; where it answers none, the checks say so and never pass on it. With internalTrafficPolicy
Local, a node without a ready endpoint is expected to drop the Service IP, and is checked for that.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from netdoctor.check.plan import PROBED_PROTOCOLS, port_of, protocol, traffic_backends
from netdoctor.judge import coverage, hops
from netdoctor.judge.common import completed, error, failed, logs, names, passed, skip
from netdoctor.model import CheckResult, Evidence, Expect, Ping, State, Step, TcpConnect, UdpExchange
from netdoctor.observations import PingOutcome, PingResult, Refusal, RefusalKind, TcpOutcome, TcpResult

_SMALL = 56


@dataclass(frozen=True)
class Attempt:
    """One TCP step boiled down: who tried, to which backend, and the decisive outcome."""

    step: Step
    node: str | None
    backend: str
    backend_node: str | None
    outcome: TcpOutcome
    connected: int
    tries: int
    refusal: Refusal | None = None  # for a refused attempt: who refused it, from the captures
    errored: int = 0  # tries with no outcome (exec failed, API stalled, probe died): never success or failure


def reached(a: Attempt) -> bool:
    """The backend answered: a connection, or a reset from the pod itself (not a node's reject)."""
    return a.outcome is TcpOutcome.CONNECTED or (a.outcome is TcpOutcome.REFUSED and a.refusal is not None
                                                  and a.refusal.reached)


def _told_apart(ev: Evidence, a: Attempt) -> Attempt:
    """A refused attempt with who refused it (hops.refusal reads the captures)."""
    return replace(a, refusal=hops.refusal(ev, a.step)) if a.outcome is TcpOutcome.REFUSED else a


def outcome(results: tuple[TcpResult, ...]) -> TcpOutcome:
    """CONNECTED if any attempt connected, else the most telling failure."""
    seen = [r.outcome for r in results]
    for o in (TcpOutcome.CONNECTED, TcpOutcome.REFUSED, TcpOutcome.TIMEOUT, TcpOutcome.UNREACHABLE, TcpOutcome.NO_REPLY):
        if o in seen:
            return o
    return TcpOutcome.ERROR


def attempts(ev: Evidence, check_id: str) -> tuple[list[Attempt], list[str]]:
    """Every planned attempt of the check. One whose step or tries errored stays in (outcome ERROR
    when every try did): an error is no evidence either way, and never leaves a denominator.
    `problems` says, one line each, what errored."""
    done, problems = completed(ev, check_id)
    results = {step.key: tuple(obs.result) for step, obs in done}
    pods = {p.ip: p for p in ev.facts.backends}
    lost = udp_answers(ev)  # the port answers: a silent exchange was lost, as a TCP timeout
    found = []
    for step, _ in ev.runs(check_id):
        pod = pods.get(step.action.ip)
        tried = results.get(step.key, ())  # none: the step itself errored (in `problems` already)
        errors = [r for r in tried if r.outcome is TcpOutcome.ERROR]
        if errors:
            problems.append(f"{step.title or step.key}: {len(errors)} of {len(tried)} tries errored ({errors[0].detail})")
        ended = outcome(tried)
        found.append(Attempt(step, ev.node_of(step.probe), pod.name if pod else step.action.ip,
                             pod.node_name if pod else None,
                             TcpOutcome.TIMEOUT if lost and ended is TcpOutcome.NO_REPLY else ended,
                             sum(r.outcome is TcpOutcome.CONNECTED for r in tried), len(tried) or step.action.attempts,
                             errored=len(errors) if tried else step.action.attempts))
    found = [_told_apart(ev, a) for a in found]
    return found, problems


def udp_answers(ev: Evidence) -> bool:
    """The checked UDP port answered some exchange of the check: it is no silent service."""
    return any(r.outcome is TcpOutcome.CONNECTED for s in ev.plan.steps if isinstance(s.action, UdpExchange)
               for obs in (ev.observed(s.key),) if obs and obs.error is None and obs.result for r in obs.result)


def _silent(tried: list[Attempt]) -> list[Attempt]:
    """UDP exchanges that got neither an answer nor an ICMP error from a port that answers none:
    open|filtered, no evidence either way."""
    return [a for a in tried if a.outcome is TcpOutcome.NO_REPLY]


def _no_steps(ev: Evidence, otherwise: str) -> str:
    """Why a data-path check has nothing to run."""
    svc = ev.facts.service
    if svc is not None and svc.external_name:
        return "an ExternalName Service has no pods nor Service IP: DNS answers a CNAME (see DNS)"
    if ev.facts.target_port and protocol(ev.facts) not in PROBED_PROTOCOLS:
        return f"{protocol(ev.facts)} ports are not probed"
    return otherwise


def idle(ev: Evidence) -> set[str]:
    """The backends the Service sends no traffic to (not Ready, while others are): they need not
    answer, so their attempts are shown but judge nothing."""
    served = {p.name for p in traffic_backends(ev.facts)}
    return {p.name for p in ev.facts.backends} - served


def _served(ev: Evidence, tried: list[Attempt]) -> list[Attempt]:
    resting = idle(ev)
    return [a for a in tried if a.backend not in resting]


def _known(tried: list[Attempt]) -> list[Attempt]:
    """The attempts with an outcome: only these can fail a check."""
    return [a for a in tried if a.outcome is not TcpOutcome.ERROR]


def _unproven(ev: Evidence, check_id: str, tried: list[Attempt], what, lines: list[str]) -> CheckResult | None:
    """ERROR when errored attempts leave the check's claim unproven for some of what it covers
    (`what(attempt)` names a backend, node or path); None when every attempt has an outcome."""
    missing = [a for a in tried if a.outcome is TcpOutcome.ERROR]
    if not missing:
        return None
    return error(check_id, f"{len(missing)} of {len(tried)} attempts errored: no evidence for "
                 f"{names(sorted(set(map(what, missing))))}", lines, logs(ev, check_id))


def _line(a: Attempt) -> str:
    tries = f" ({a.connected}/{a.tries})" if a.tries > 1 else ""
    told = f" ({_who(a.refusal)})" if a.refusal else ""
    answered = isinstance(a.step.action, UdpExchange) and a.outcome is TcpOutcome.CONNECTED
    return f"{a.step.title or a.step.key}: {'answered' if answered else a.outcome.value}{tries}{told}"


def _who(r: Refusal) -> str:
    """Who refused, for the evidence lines."""
    sender = r.sender or r.seen_as or "?"
    if r.kind is RefusalKind.POD:
        return f"{r.how} from the pod itself: nothing listens"
    if r.kind is RefusalKind.REJECT:
        return f"rejected by {r.node or '?'}: {r.how} from {sender}"
    if r.kind is RefusalKind.NO_ENDPOINTS:
        return f"no endpoint in {r.node or '?'}'s Service rules: {r.how} from {sender}"
    if r.kind is RefusalKind.UNKNOWN:
        return "who refused is unknown: no capture shows it"
    return f"{r.how} from {sender} ({r.node or '?'})"


def _failure(a: Attempt) -> str | None:
    """The ND-POD-001 cause of an attempt that did not connect (None when it did): the pod's own
    reset, a node's reject, a refusal no capture explains, a timeout, unreachable."""
    if a.outcome is not TcpOutcome.REFUSED:
        return None if a.outcome is TcpOutcome.CONNECTED else a.outcome.value
    kind = a.refusal.kind if a.refusal else RefusalKind.UNKNOWN
    if kind is RefusalKind.POD:
        return "refused"
    return "rejected" if kind in (RefusalKind.REJECT, RefusalKind.NO_ENDPOINTS) else "refused-unknown"


# --- layer 3: direct Pod IP --------------------------------------------------------------------


def judge_pod(ev: Evidence) -> list[CheckResult]:
    if not ev.runs("ND-POD-001"):
        return [skip("ND-POD-001", _no_steps(ev, "no backend pod with an IP to connect to"))]
    shown, problems = attempts(ev, "ND-POD-001")
    tried, resting = _served(ev, shown), idle(ev)
    lines = [_line(a) + (" (gets no traffic: need not answer)" if a.backend in resting else "") for a in shown]
    lines += problems
    port = ", ".join(map(str, sorted({a.step.action.port for a in tried})))
    for cause in ("rejected", "refused", "refused-unknown", "timeout", "unreachable"):
        bad = [a for a in tried if _failure(a) == cause]
        if bad:
            pods = [a.backend for a in bad]
            params = {"pods": names(pods), "pod": pods[0], "node": bad[0].backend_node or "<node>"}
            if cause == "rejected":
                r = bad[0].refusal
                params |= {"node": r.node or "?", "sender": r.sender or r.seen_as or "?", "icmp": r.how}
            what = "rejected by a node" if cause == "rejected" else bad[0].outcome.value
            return [failed("ND-POD-001", cause, f"{len(pods)}/{len(tried)} backends {what} on port {port}",
                           lines, params, log=logs(ev, "ND-POD-001"))]
    silent = _silent(tried)
    if silent:
        pods = [a.backend for a in silent]
        return [failed("ND-POD-001", "open-filtered", f"{len(pods)}/{len(tried)} backends answer nothing on UDP port "
                       f"{port}, and send no ICMP error: open|filtered", lines, {"pods": names(pods)}, State.WARN)]
    return [_unproven(ev, "ND-POD-001", tried, lambda a: a.backend, lines)
            or passed("ND-POD-001", f"{len(tried)}/{len(tried)} backends {_verb(ev)} on port {port}", lines)]


def _verb(ev: Evidence) -> str:
    return "answer" if protocol(ev.facts) == "UDP" else "connect"


# --- layer 4: Service IP -----------------------------------------------------------------------


def judge_service(ev: Evidence) -> list[CheckResult]:
    return [_cluster_ip(ev), _node_port(ev)]


def _cluster_ip(ev: Evidence) -> CheckResult:
    svc = ev.facts.service
    if svc is None or not svc.cluster_ip or not ev.runs("ND-SVC-001"):
        return skip("ND-SVC-001", _no_steps(ev, "no Service IP (headless or not a Service)"))
    tried, problems = attempts(ev, "ND-SVC-001")
    if not tried:
        return error("ND-SVC-001", "no connection to the Service IP completed", problems, logs(ev, "ND-SVC-001"))
    a = tried[0]
    lines = [_line(a)] + problems + [_spread(ev, a.step)]
    params = {"connected": str(a.connected), "attempts": str(a.tries), "outcome": a.outcome.value}
    if a.errored and a.connected + a.errored == a.tries:  # no try failed, but the errored ones prove nothing
        return error("ND-SVC-001", f"{a.errored} of {a.tries} connections errored (the other {a.connected} connected): "
                     f"no evidence that {svc.cluster_ip}:{ev.facts.port} works", lines, logs(ev, "ND-SVC-001"))
    if a.step.expect is Expect.DROPPED:
        return _dropped_by_design(a, lines, params)
    if a.outcome is TcpOutcome.NO_REPLY:
        return failed("ND-SVC-001", "open-filtered", f"{a.tries} exchanges with {svc.cluster_ip}:{ev.facts.port}/udp: no "
                      f"answer and no ICMP error (open|filtered)", lines, params, State.WARN)
    found = coverage.of(ev, a.step)
    if found.missed:
        return _backend_unreached(ev, found, lines, params)
    if a.connected == a.tries:
        return _all_connected(ev, a, found, lines, params)
    if a.connected:
        return failed("ND-SVC-001", "partial", f"{a.connected}/{a.tries} connections succeeded", lines, params,
                      log=logs(ev, "ND-SVC-001"))
    if a.refusal is not None and a.refusal.kind is RefusalKind.REJECT:  # after the DNAT: not kube-proxy
        r = a.refusal
        params |= {"node": r.node or "?", "sender": r.sender or r.seen_as or "?", "icmp": r.how}
        return failed("ND-SVC-001", "rejected", f"0/{a.tries} connections: rejected by {r.node or '?'}", lines, params,
                      log=logs(ev, "ND-SVC-001"))
    good = sorted({x.node for x in _node_service(ev) if x.connected and x.node != a.node})
    if good and a.node and _reaches_every_backend(ev, a.node):
        params |= {"node": a.node, "good_nodes": ", ".join(good), **_proxy_words(ev, a.node)}
        return failed("ND-SVC-001", "node-only", f"fails from {a.node}, works from {', '.join(good)}", lines, params)
    pod_ok = any(x.outcome is TcpOutcome.CONNECTED for x in attempts(ev, "ND-POD-001")[0])
    cause = "all-fail" if pod_ok else "backends-fail"
    return failed("ND-SVC-001", cause, f"0/{a.tries} connections ({a.outcome.value})", lines, params,
                  log=logs(ev, "ND-SVC-001"))


def _proxy_words(ev: Evidence, node: str) -> dict[str, str]:
    """Who translates the Service IP on `node`, for node-only's words: kube-proxy, or the CNI that
    translates at the socket in its place (Cilium's service map)."""
    socket = hops.socket_proxy(ev, node)
    if socket == "Cilium":
        return {"proxy": "Cilium's service map (its agent)", "proxy_label": "k8s-app=cilium"}
    if socket:
        return {"proxy": f"{socket}'s service map (its agent)", "proxy_label": "k8s-app=calico-node"}
    return {"proxy": "kube-proxy", "proxy_label": "k8s-app=kube-proxy"}


def _dropped_by_design(a: Attempt, lines: list[str], params: dict[str, str]) -> CheckResult:
    """internalTrafficPolicy Local, from a node without a ready endpoint: the Service IP must drop
    there (its rules have nowhere local to send it). PASS when it did; a WARN when it answered or
    was rejected: the node's Service rules do not honour the policy."""
    node = a.node or "?"
    if a.connected == 0 and a.outcome in (TcpOutcome.TIMEOUT, TcpOutcome.NO_REPLY):
        return passed("ND-SVC-001", f"dropped from {node}, as internalTrafficPolicy Local means on a node without a "
                      f"ready endpoint (the nodes with one: ND-NODE-003)", lines)
    return failed("ND-SVC-001", "local-not-dropped", f"{node} has no ready endpoint, yet the Service IP did not drop "
                  f"({a.outcome.value}, {a.connected}/{a.tries})", lines, params | {"node": node}, State.WARN)


def _all_connected(ev: Evidence, a: Attempt, found: coverage.Coverage, lines: list[str],
                   params: dict[str, str]) -> CheckResult:
    """PASS with the coverage; WARN when a ready backend got no connection and chance can't be
    ruled out (the attempts' cap, or connections the captures missed). With session affinity one
    client reaches one backend: the coverage is the pod IPs' (ND-POD-001)."""
    done = f"{a.connected}/{a.tries} {'exchanges' if protocol(ev.facts) == 'UDP' else 'connections'} to " \
           f"{ev.facts.service.cluster_ip}:{ev.facts.port}"
    if found.ready < 2:
        return passed("ND-SVC-001", done, lines)
    if found.sticky:
        return passed("ND-SVC-001", f"{done}; {coverage.summary(found)}" if found.known else
                      f"{done}; session affinity ClientIP: one client reaches one backend, every ready backend is "
                      f"checked on its pod IP (ND-POD-001)", lines)
    left = found.having(coverage.Reach.UNACCOUNTED)
    if left:
        params = params | {"backends": names(b.pod for b in left), "chance": f"{found.chance:.1g}"}
        return failed("ND-SVC-001", "coverage-incomplete", f"{done}; {coverage.shortfall(found, left)}", lines,
                      params, State.WARN)
    slow = _retransmitted(ev, a.step)
    if slow:
        params = params | {"slow": str(slow)}
        return failed("ND-SVC-001", "syn-retransmitted", f"{done}, {slow} only after a SYN retransmission", lines,
                      params, State.WARN)
    return passed("ND-SVC-001", f"{done}; {coverage.summary(found)}", lines)


RETRANSMIT_S = 0.95  # Linux resends an unanswered SYN after 1 s: a connect that took this long lost one


def unsettled(ev: Evidence, step: Step) -> str | None:
    """The runner's question after its first rounds: why a step's results may say more about the
    probe pods' newness than about the path. In its first second a new pod is often not known yet
    to the nodes' policy rules or routes (Calico's Felix, Cilium's agents, kube-router learn it
    from the API server): its SYNs are dropped (and resent after 1 s) or rejected, its one echo
    request lost. Connections refused by anything but the pod itself, the Service IP's connections
    that needed a retransmission, and pings that got no reply are looked at again once that has had
    time to settle; only the new look is judged."""
    action = step.action
    if step.expect is not Expect.SUCCEED:
        return None
    obs = ev.observed(step.key)
    if isinstance(action, Ping):
        lost = obs is not None and isinstance(obs.result, PingResult) and obs.result.outcome is PingOutcome.TIMEOUT
        return "the echo got no reply" if lost else None
    if not isinstance(action, TcpConnect):
        return None
    results = obs.result if obs and isinstance(obs.result, tuple) else ()
    udp = isinstance(action, UdpExchange)
    refused = sum(1 for r in results if r.outcome in (TcpOutcome.REFUSED, TcpOutcome.UNREACHABLE))
    if refused and hops.refusal(ev, step).kind not in (RefusalKind.POD, RefusalKind.NO_ENDPOINTS):
        what = ("exchange" if udp else "connection") + ("s" if refused > 1 else "")
        return f"{refused} {what} refused or unreachable"
    slow = _retransmitted(ev, step) if step.check_id == "ND-SVC-001" and not udp else 0
    return f"{slow} connection{'s' if slow > 1 else ''} needed a SYN retransmission" if slow else None


def _retransmitted(ev: Evidence, step: Step) -> int:
    """Connections that succeeded only after the kernel resent their SYN: the first SYN was lost,
    and through a Service the resent one may have been balanced to another backend. Without capture
    this is the only trace of a backend that silently drops new connections."""
    obs = ev.observed(step.key)
    results = obs.result if obs and isinstance(obs.result, tuple) else ()
    return sum(1 for r in results if r.outcome is TcpOutcome.CONNECTED and (r.elapsed or 0) >= RETRANSMIT_S)


def _backend_unreached(ev: Evidence, found: coverage.Coverage, lines: list[str], params: dict[str, str]) -> CheckResult:
    """A ready backend never reached while another was: a broken backend behind the Service."""
    missed, reached = found.missed, found.having(coverage.Reach.REACHED)
    params = params | {"backends": names(b.pod for b in missed), "backend": missed[0].pod,
                       "reached": names(f"{b.pod} ×{b.connections}" for b in reached)}
    return failed("ND-SVC-001", "backend-unreached", f"{coverage.shortfall(found, missed)} ({coverage.summary(found)})",
                  lines, params, log=logs(ev, "ND-SVC-001"))


def _spread(ev: Evidence, step: Step) -> str:
    """Which backends the Service IP's connections were translated to, from the captures."""
    if not ev.captures:
        return "the spread across backends is not observed without packet capture"
    counts = hops.spread(ev, step)
    if not counts:
        return "no translated connection seen in the captures"
    pods = {f"{p.ip}:{port_of(ev.facts, p)}": p.name for p in ev.facts.backends}
    return "spread: " + ", ".join(f"{pods.get(target, target)} ×{n}" for target, n in counts)


def _reaches_every_backend(ev: Evidence, node: str) -> bool:
    """The node's probe reached each backend's pod IP: its paths are fine, its Service rules aren't."""
    from_node = [x for x in _served(ev, attempts(ev, "ND-NODE-002")[0]) if x.node == node]
    return bool(from_node) and all(reached(x) for x in from_node)


def _node_service(ev: Evidence) -> list[Attempt]:
    return attempts(ev, "ND-NODE-003")[0]


def _node_port(ev: Evidence) -> CheckResult:
    if not ev.runs("ND-SVC-002"):
        return skip("ND-SVC-002", "not a NodePort Service")
    tried, problems = attempts(ev, "ND-SVC-002")
    lines = [_line(a) for a in tried] + problems
    if _silent(tried):
        return skip("ND-SVC-002", "the UDP port answers no probe and sends no ICMP error (open|filtered): the "
                    "NodePort cannot be told working or not")
    bad = [a.step.action.ip for a in _known(tried) if a.outcome is not TcpOutcome.CONNECTED]
    if bad:
        return failed("ND-SVC-002", "nodeport-fail", f"NodePort fails on {len(bad)} node(s)", lines,
                      {"nodes": names(bad)})
    return _unproven(ev, "ND-SVC-002", tried, lambda a: a.step.action.ip, lines) or passed(
        "ND-SVC-002", f"NodePort answers on {len(tried)} node(s)", lines)


# --- layer 5: cross-node -----------------------------------------------------------------------


def judge_node(ev: Evidence) -> list[CheckResult]:
    return [_nodes_ready(ev), _cross_node(ev), _node_service_ip(ev), *_pings(ev)]


def _nodes_ready(ev: Evidence) -> CheckResult:
    nodes = ev.facts.nodes
    if not nodes:
        return skip("ND-NODE-001", "nodes could not be listed")
    down = [n.name for n in nodes if not n.ready]
    lines = [f"{n.name}: {'Ready' if n.ready else 'NotReady'}" for n in nodes]
    if not down:
        return passed("ND-NODE-001", f"{len(nodes)}/{len(nodes)} nodes Ready", lines)
    hosting = {p.node_name for p in ev.facts.backends} & set(down)
    state = State.FAIL if hosting else State.WARN
    return failed("ND-NODE-001", "not-ready", f"{len(down)} node(s) NotReady" + (", hosting backends" if hosting else ""),
                  lines, {"nodes": names(down), "node": sorted(hosting)[0] if hosting else down[0]}, state)


def _pair(a: Attempt) -> str:
    return f"{a.node or '?'} → {a.backend} ({a.backend_node or '?'})"


def _cross_node(ev: Evidence) -> CheckResult:
    if not ev.runs("ND-NODE-002"):
        return skip("ND-NODE-002", _no_steps(ev, "no node probes planned"))
    tried, problems = attempts(ev, "ND-NODE-002")
    expected = [a for a in _served(ev, tried) if a.step.expect is Expect.SUCCEED]
    if not expected:
        return skip("ND-NODE-002", "the NetworkPolicies deny these flows (see NetworkPolicy)")
    lines = [_line(a) for a in expected] + problems
    if _silent(expected):
        return skip("ND-NODE-002", "the UDP port answers no probe and sends no ICMP error (open|filtered): the paths "
                    "cannot be told working or not")
    bad = [a for a in _known(expected) if not reached(a)]
    if not bad:
        return _unproven(ev, "ND-NODE-002", expected, _pair, lines) or passed(
            "ND-NODE-002", f"{len(expected)} node → backend paths work", lines)
    refused = _refused_paths(ev, bad, lines)
    if refused:
        return refused
    bad = [a for a in bad if a.outcome is not TcpOutcome.REFUSED]
    log, pairs = logs(ev, "ND-NODE-002"), names(map(_pair, bad))
    if any(a.node == a.backend_node for a in bad):
        return failed("ND-NODE-002", "unreachable", f"{len(bad)} path(s) fail, same-node too", lines, {"pairs": pairs}, log=log)
    isolated = _isolated_node(_known(expected), bad)
    if isolated:
        return failed("ND-NODE-002", "node-isolated", f"node {isolated} is cut off", lines, {"node": isolated}, log=log)
    return failed("ND-NODE-002", "cross-node", f"{len(bad)} cross-node path(s) fail", lines, {"pairs": pairs}, log=log)


def _refused_paths(ev: Evidence, bad: list[Attempt], lines: list[str]) -> CheckResult | None:
    """A node's reject answering for the pods fails the paths with that node named; refusals no
    capture explains fail them as such when nothing else did (they prove no path)."""
    log = logs(ev, "ND-NODE-002")
    rejected = [a for a in bad if _failure(a) == "rejected"]
    if rejected:
        by = names(sorted({a.refusal.node or "?" for a in rejected}))
        first = rejected[0].refusal
        params = {"pairs": names(map(_pair, rejected)), "nodes": by, "sender": first.sender or first.seen_as or "?",
                  "icmp": first.how}
        return failed("ND-NODE-002", "rejected", f"{len(rejected)} path(s) rejected by {by}", lines, params, log=log)
    if all(a.outcome is TcpOutcome.REFUSED for a in bad):
        return failed("ND-NODE-002", "refused-unknown", f"{len(bad)} path(s) refused, by whom is unknown", lines,
                      {"pairs": names(map(_pair, bad))}, log=log)
    return None


def _isolated_node(expected: list[Attempt], bad: list[Attempt]) -> str | None:
    """The one node every failing path touches while paths between the other nodes work (≥3 nodes)."""
    nodes = {a.node for a in expected} | {a.backend_node for a in expected}
    if len(nodes) < 3:
        return None
    for node in sorted(n for n in nodes if n):
        touches = lambda a: node in (a.node, a.backend_node)  # noqa: E731
        if all(touches(a) for a in bad) and all(a in bad for a in expected if touches(a) and a.node != a.backend_node):
            return node
    return None


def _node_service_ip(ev: Evidence) -> CheckResult:
    if not ev.runs("ND-NODE-003"):
        return skip("ND-NODE-003", "no Service IP, or no node probes planned")
    tried, problems = attempts(ev, "ND-NODE-003")
    expected = [a for a in tried if a.step.expect is Expect.SUCCEED]
    dropping = [a for a in tried if a.step.expect is Expect.DROPPED]
    if not expected and not dropping:
        return skip("ND-NODE-003", "the NetworkPolicies deny these flows (see NetworkPolicy)")
    if _silent(tried):
        return skip("ND-NODE-003", "the UDP port answers no probe and sends no ICMP error (open|filtered): the "
                    "Service IP cannot be told working or not")
    lines = [_line(a) for a in expected] + [f"{_line(a)} (no ready endpoint there: expected to drop)"
                                            for a in dropping] + problems
    answered = [a.node or "?" for a in _known(dropping) if a.outcome is not TcpOutcome.TIMEOUT]
    if answered:
        return failed("ND-NODE-003", "local-not-dropped", f"the Service IP did not drop from {names(answered)}, which "
                      f"has no ready endpoint", lines, {"nodes": names(answered)}, State.WARN)
    bad = [a.node for a in _known(expected) if a.connected == 0 and _reaches_every_backend(ev, a.node)]
    unproven = _unproven(ev, "ND-NODE-003", expected + dropping, lambda a: a.node or "?", lines)
    if not bad and unproven:
        return unproven
    if not bad:
        works = [a for a in expected if a.connected]
        rest = "" if len(works) == len(expected) else "; where it fails, the pod IPs fail too (see ND-NODE-002)"
        said = [f"works from {len(works)}/{len(expected)} node(s){rest}"] if expected else []
        said += [f"drops, as internalTrafficPolicy Local means, from {names(a.node or '?' for a in dropping)} (no "
                 f"ready endpoint there)"] if dropping else []
        return passed("ND-NODE-003", "the Service IP " + "; ".join(said), lines)
    cause = "everywhere" if len(bad) == len(expected) else "kube-proxy"
    return failed("ND-NODE-003", cause, f"Service IP fails from {names(bad)} while pod IPs work", lines,
                  {"nodes": names(bad)}, log=logs(ev, "ND-NODE-003"))


def _pings(ev: Evidence) -> list[CheckResult]:
    done, problems = completed(ev, "ND-NODE-004")
    if not done:
        if problems:  # every ping step errored: no evidence at all
            return [error(i, "no ping ran", problems, logs(ev, "ND-NODE-004")) for i in ("ND-NODE-004", "ND-NODE-005")]
        reason = "the NetworkPolicies admit no ICMP on these paths" if ev.runs("ND-NODE-002") else \
            _no_steps(ev, "no node probes planned")
        return [skip("ND-NODE-004", reason), skip("ND-NODE-005", reason)]
    by_pair: dict[tuple[str | None, str], list[PingResult]] = {}
    for step, obs in done:
        by_pair.setdefault((ev.node_of(step.probe), _target(ev, step.action)), []).append(obs.result)
    if all(r.outcome is PingOutcome.ERROR for rs in by_pair.values() for r in rs):
        detail = next(r.detail for rs in by_pair.values() for r in rs)
        reason = f"ping unavailable in the probe: {detail}"
        return [skip("ND-NODE-004", reason), skip("ND-NODE-005", reason)]
    ran = {step.key for step, _ in done}
    errored = {f"{ev.node_of(step.probe)} → {_target(ev, step.action)}" for step, _ in ev.runs("ND-NODE-004")
               if step.key not in ran}
    errored |= {f"{n} → {t}" for (n, t), rs in by_pair.items() if any(r.outcome is PingOutcome.ERROR for r in rs)}
    return [_mtu(ev, by_pair, errored, problems), _icmp(ev, by_pair, errored, problems)]


def _target(ev: Evidence, action) -> str:
    """Who was pinged, for humans: a backend (and its node), or the probe on another node."""
    if action.to_probe:
        return f"probe on {ev.node_of(action.to_probe)}"
    pod = next((p for p in ev.facts.backends if p.ip == action.ip), None)
    return f"{pod.name} ({pod.node_name})" if pod else action.ip


def _unproven_pairs(ev: Evidence, check_id: str, by_pair: dict, errored: set[str], lines: list[str]) -> CheckResult | None:
    """ERROR when pings of some paths errored: the check's claim is unproven for them."""
    if not errored:
        return None
    total = len({f"{n} → {t}" for n, t in by_pair} | errored)
    return error(check_id, f"pings errored on {len(errored)} of {total} path(s): no evidence for {names(sorted(errored))}",
                 lines, logs(ev, "ND-NODE-004"))


def _small_ok(results: list[PingResult]) -> bool:
    return any(r.size <= _SMALL and r.outcome is PingOutcome.REPLY for r in results)


def _mtu(ev: Evidence, by_pair: dict, errored: set[str], problems: list[str]) -> CheckResult:
    lines, holes = [], []
    for (node, target), results in sorted(by_pair.items(), key=str):
        lines.append(f"{node} → {target}: " + ", ".join(
            f"{r.size}B{' DF' if r.size > _SMALL else ''} {r.outcome.value}" for r in sorted(results, key=lambda r: r.size)))
        lost = [r.size for r in results if r.size > _SMALL and r.outcome is PingOutcome.TIMEOUT]
        if _small_ok(results) and lost:
            holes.append((f"{node} → {target}", min(lost)))
    if not any(_small_ok(rs) for rs in by_pair.values()):
        return skip("ND-NODE-004", "no small ping got through (ICMP filtered?), path MTU not measurable")
    if holes:
        size = min(s for _, s in holes)
        return failed("ND-NODE-004", "mtu", f"DF pings of {size} bytes lost on {len(holes)} path(s)", lines,
                      {"pairs": names(p for p, _ in holes), "size": str(size)}, log=logs(ev, "ND-NODE-004"))
    return _unproven_pairs(ev, "ND-NODE-004", by_pair, errored, lines + problems) or passed(
        "ND-NODE-004", "full-size DF pings pass (or the sender knows the path MTU)", lines)


def _icmp(ev: Evidence, by_pair: dict, errored: set[str], problems: list[str]) -> CheckResult:
    """Pings the policies admit fail while TCP across the nodes works: ICMP is filtered. A small
    ping that errored is no evidence of filtering."""
    tcp_works = any(reached(a) for a in attempts(ev, "ND-NODE-002")[0])
    blocked = [pair for pair, rs in by_pair.items() if not _small_ok(rs)
               and any(r.size <= _SMALL and r.outcome is not PingOutcome.ERROR for r in rs)]
    if blocked and tcp_works:
        pairs = names(f"{n} → {t}" for n, t in blocked)
        return failed("ND-NODE-005", "icmp-blocked", f"ping fails, TCP works on {len(blocked)} path(s)",
                      [pairs], {"pairs": pairs}, State.WARN)
    return _unproven_pairs(ev, "ND-NODE-005", by_pair, errored, problems) or passed(
        "ND-NODE-005", "ping gets through where the policies admit it")
