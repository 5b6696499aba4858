"""Layer 0, Target: the Service's shape, its backing pods, and whether they listen on the targetPort.

Called by judge.verdict. Real-world shapes are no faults: an ExternalName Service has no pods, a
Service without a selector has hand-made endpoints, a LoadBalancer may wait for a load balancer,
publishNotReadyAddresses sends traffic to pods that are not Ready, a pod that gets no traffic (not
Ready, mid-rollout) need not listen. Whether a backend listens is read from its socket table (exec
of `cat` in the container declaring the port, else another of the pod's); where no container can
run it (distroless images) or exec is refused, from the packets: the source's connection to the pod
IP accepted, or reset by the pod itself. When neither tells, the check is SKIP with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from netdoctor.check.plan import traffic_backends
from netdoctor.judge.common import error, failed, logs, names, passed, skip
from netdoctor.judge.paths import Attempt, attempts
from netdoctor.model import CheckResult, Evidence, Expect, Observation, State, Step
from netdoctor.observations import BindScope, ListenerStatus, ListenerTable, RefusalKind, TcpOutcome

ALIAS = "an ExternalName Service has no pods: DNS answers a CNAME (see DNS)"


def judge(ev: Evidence) -> list[CheckResult]:
    svc = ev.facts.service
    if svc is not None and svc.external_name:
        return [_alias(ev), skip("ND-TGT-002", ALIAS), skip("ND-TGT-003", ALIAS)]
    return [_service(ev), _backends(ev), _listeners(ev)]


def _alias(ev: Evidence) -> CheckResult:
    svc = ev.facts.service
    return passed("ND-TGT-001", f"ExternalName Service: an alias of {svc.external_name}",
                  [f"Service {svc.name}: ExternalName {svc.external_name}: DNS answers a CNAME, no Service IP, no "
                   f"endpoints, no ports to probe"])


def _service(ev: Evidence) -> CheckResult:
    f = ev.facts
    svc = f.service
    if svc is None:
        return failed("ND-TGT-001", "no-service", f"no Service selects {f.target}", state=State.WARN)
    ports = ", ".join(f"{p.port}/{p.protocol}" for p in svc.ports) or "none"
    shape = [f"Service {svc.name}: {svc.type}, " + ("headless" if svc.headless else f"ClusterIP {svc.cluster_ip}"),
             f"ports: {ports}", f"selector: {_selector(svc) or '<none>'}"]
    if f.service_port is None:
        return failed("ND-TGT-001", "port-missing", "the Service declares no port", shape, {"ports": ports})
    if svc.type == "LoadBalancer":
        shape.append("load balancer: " + (", ".join(svc.load_balancer_ips) or "none yet (status.loadBalancer is empty: "
                                          "not a fault; its NodePort and ClusterIP are checked)"))
    if not svc.selector:
        shape.append(f"no selector: its endpoints are managed by hand ({len(f.slices or ())} EndpointSlice(s))")
    return passed("ND-TGT-001", f"{svc.type} Service, port {f.service_port.port} → {f.service_port.target_port}", shape)


def _selector(svc) -> str:
    return ",".join(f"{k}={v}" for k, v in svc.selector)


def _backends(ev: Evidence) -> CheckResult:
    pods, svc = ev.facts.backends, ev.facts.service
    if not pods:
        return skip("ND-TGT-002", "no pod matches the selector (see Endpoints)" if svc is None or svc.selector else
                    "no selector, and its EndpointSlices point at no pod (see Endpoints)")
    lines = [f"{p.name}: {p.phase}, {'Ready' if p.ready else 'not Ready'}, {p.ip or 'no IP'} on {p.node_name or '?'}"
             + (", terminating" if p.deleting else "") for p in pods]
    not_running = [p.name for p in pods if p.phase != "Running"]
    not_ready = [p.name for p in pods if p.phase == "Running" and not p.ready]
    published = not_ready if ev.facts.service is not None and ev.facts.service.publish_not_ready_addresses else []
    bad = not_running or [p for p in not_ready if p not in published]
    if not bad:
        also = f"; {names(published)} not Ready but published (publishNotReadyAddresses): served anyway, by design" \
            if published else ""
        return passed("ND-TGT-002", f"{len(pods)}/{len(pods)} Running" + ("" if published else " and Ready") + also,
                      lines)
    cause = "not-running" if not_running else "not-ready"
    state = State.FAIL if len(not_running) + len(not_ready) == len(pods) else State.WARN
    ready = len(pods) - len(not_running) - len(not_ready)
    return failed("ND-TGT-002", cause, f"{ready}/{len(pods)} Running and Ready", lines,
                  {"pods": names(bad), "pod": bad[0]}, state)


class _Found(Enum):
    """What is known of one backend's listener on its port."""

    LISTENS = "listens"  # a socket accepts from the network, or a connection was accepted
    LOOPBACK = "loopback"  # bound to 127.0.0.1 only
    NOTHING = "nothing"  # no socket, or the pod itself reset a connection
    UNKNOWN = "unknown"  # no way to read it: no `cat` in any container, exec refused, the packets silent
    ERRORED = "errored"  # reading it errored (and the packets did not tell): no evidence


@dataclass(frozen=True)
class _Backend:
    pod: str
    found: _Found
    line: str
    table: ListenerTable | None = None


def _listeners(ev: Evidence) -> CheckResult:
    runs = ev.runs("ND-TGT-003")
    if not runs:
        return skip("ND-TGT-003", "no Running backend to inspect")
    required = {p.name for p in traffic_backends(ev.facts)}
    told = attempts(ev, "ND-POD-001")[0] if ev.runs("ND-POD-001") else []
    found = [_backend(step, obs, next((a for a in told if a.backend == step.action.pod), None)) for step, obs in runs]
    lines = [b.line + ("" if b.pod in required else " (gets no traffic: need not listen)") for b in found]
    judged = [b for b in found if b.pod in required]
    port = _ports(runs)
    for kind, cause in ((_Found.LOOPBACK, "loopback-only"), (_Found.NOTHING, "not-listening")):
        bad = next((b for b in judged if b.found is kind), None)
        if bad and kind is _Found.LOOPBACK:
            return failed("ND-TGT-003", cause, f"{bad.pod} listens on 127.0.0.1:{port} only", lines, {"pod": bad.pod})
        if bad:
            return failed("ND-TGT-003", cause, f"nothing in {bad.pod} accepts connections on {port}", lines,
                          {"pod": bad.pod, "listening": _listening(bad.table)})
    errored = [b.pod for b in judged if b.found is _Found.ERRORED]
    if errored:  # an error is no evidence: those backends may not listen
        return error("ND-TGT-003", f"{len(errored)} of {len(judged)} backends' socket tables could not be read: no "
                     f"evidence for {names(errored)}", lines, logs(ev, "ND-TGT-003"))
    unknown = [b.pod for b in judged if b.found is _Found.UNKNOWN]
    listening = len(judged) - len(unknown)
    if not listening:
        return CheckResult("ND-TGT-003", State.SKIP, message=f"cannot tell whether {names(unknown)} listen(s) on {port}: "
                           f"no socket table readable, no connection answered", evidence=tuple(lines))
    rest = f"; cannot tell for {names(unknown)}" if unknown else ""
    return passed("ND-TGT-003", f"{listening} backend(s) listen on {port}{rest}", lines)


def _ports(runs: tuple[tuple[Step, Observation | None], ...]) -> str:
    return ", ".join(map(str, sorted({step.action.port for step, _ in runs})))


def _listening(table: ListenerTable | None) -> str:
    if table is None or table.status is not ListenerStatus.OK:
        return "unknown: its socket table is unreadable"
    return ", ".join(map(str, sorted({x.port for x in table.listeners if x.accepts_from_network()}))) or "nothing"


def _backend(step: Step, obs: Observation | None, told: Attempt | None) -> _Backend:
    """One backend's listener: its socket table when one was read, else the source's connection."""
    pod, port = step.action.pod, step.action.port
    table = obs.result if obs and obs.error is None and isinstance(obs.result, ListenerTable) else None
    if table is not None and table.status is ListenerStatus.OK:
        listeners = table.on_port(port)
        found = _Found.LISTENS if any(x.accepts_from_network() for x in listeners) else (
            _Found.LOOPBACK if any(x.scope is BindScope.LOOPBACK for x in listeners) else _Found.NOTHING)
        where = f" (read in container {table.container})" if table.container else ""
        return _Backend(pod, found, f"{pod}: port {port} {_describe(table, port)}{where}", table)
    why = table.detail if table is not None else (obs.error if obs else "did not run") or "no result"
    found, how = _by_packets(told)
    if found is _Found.UNKNOWN and table is None:
        found = _Found.ERRORED
    return _Backend(pod, found, f"{pod}: socket table unreadable ({why}); {how}", table)


def _by_packets(a: Attempt | None) -> tuple[_Found, str]:
    """What the source's connection to the pod IP says of its listener: accepted (or answered,
    for UDP), or reset by the pod itself (a node's reject proves nothing)."""
    if a is None or a.step.expect is not Expect.SUCCEED:
        return _Found.UNKNOWN, "no connection to its pod IP tells (see Direct Pod IP)"
    target = f"{a.step.action.ip}:{a.step.action.port}"
    if a.outcome is TcpOutcome.CONNECTED:
        return _Found.LISTENS, f"the source's connection to {target} was answered: it listens"
    if a.outcome is TcpOutcome.REFUSED and a.refusal is not None and a.refusal.kind is RefusalKind.POD:
        return _Found.NOTHING, f"the pod itself refused the source's connection to {target} ({a.refusal.how})"
    return _Found.UNKNOWN, f"the source's connection to {target} does not tell ({a.outcome.value})"


def _describe(table: ListenerTable, port: int) -> str:
    found = table.on_port(port)
    if not found:
        return "not listened on"
    return "bound to " + ", ".join(f"{x.address} ({x.scope.value})" for x in found)
