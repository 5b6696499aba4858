"""Layer 0, Target: the Service's shape, its backing pods, and whether they listen on the targetPort."""

from __future__ import annotations

from netdoctor.judge.common import completed, error, failed, logs, names, passed, skip
from netdoctor.model import CheckResult, Evidence, State
from netdoctor.observations import BindScope, ListenerStatus, ListenerTable


def judge(ev: Evidence) -> list[CheckResult]:
    return [_service(ev), _backends(ev), _listeners(ev)]


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
    if not svc.selector:
        return failed("ND-TGT-001", "no-selector", "no selector: endpoints are managed by hand", shape, state=State.WARN)
    return passed("ND-TGT-001", f"{svc.type} Service, port {f.service_port.port} → {f.service_port.target_port}", shape)


def _selector(svc) -> str:
    return ",".join(f"{k}={v}" for k, v in svc.selector)


def _backends(ev: Evidence) -> CheckResult:
    pods = ev.facts.backends
    if not pods:
        return skip("ND-TGT-002", "no pod matches the selector (see Endpoints)")
    lines = [f"{p.name}: {p.phase}, {'Ready' if p.ready else 'not Ready'}, {p.ip or 'no IP'} on {p.node_name or '?'}"
             for p in pods]
    not_running = [p.name for p in pods if p.phase != "Running"]
    not_ready = [p.name for p in pods if p.phase == "Running" and not p.ready]
    bad = not_running or not_ready
    if not bad:
        return passed("ND-TGT-002", f"{len(pods)}/{len(pods)} Running and Ready", lines)
    cause = "not-running" if not_running else "not-ready"
    state = State.FAIL if len(not_running) + len(not_ready) == len(pods) else State.WARN
    ready = len(pods) - len(not_running) - len(not_ready)
    return failed("ND-TGT-002", cause, f"{ready}/{len(pods)} Running and Ready", lines,
                  {"pods": names(bad), "pod": bad[0]}, state)


def _listeners(ev: Evidence) -> CheckResult:
    done, problems = completed(ev, "ND-TGT-003")
    port = ev.facts.target_port
    if not done and not problems:
        return skip("ND-TGT-003", "no Running backend to inspect")
    tables = {step.action.pod: obs.result for step, obs in done if isinstance(obs.result, ListenerTable)}
    usable = {pod: t for pod, t in tables.items() if t.status is ListenerStatus.OK}
    problems += [f"{pod}: socket table unavailable ({t.detail})" for pod, t in tables.items() if pod not in usable]
    if not usable:
        return error("ND-TGT-003", "could not read any backend's listening sockets", problems, logs(ev, "ND-TGT-003"))
    lines = [f"{pod}: port {port} " + _describe(t, port) for pod, t in usable.items()] + problems
    for pod, table in usable.items():
        listeners = table.on_port(port)
        if any(x.accepts_from_network() for x in listeners):
            continue
        if any(x.scope is BindScope.LOOPBACK for x in listeners):
            return failed("ND-TGT-003", "loopback-only", f"{pod} listens on 127.0.0.1:{port} only", lines,
                          {"pod": pod})
        ports = sorted({x.port for x in table.listeners if x.accepts_from_network()})
        return failed("ND-TGT-003", "not-listening", f"nothing in {pod} accepts connections on {port}", lines,
                      {"pod": pod, "listening": ", ".join(map(str, ports)) or "nothing"})
    errored = [step.action.pod for step, _ in ev.runs("ND-TGT-003") if step.action.pod not in tables]
    if errored:  # an error is no evidence: those backends may not listen
        return error("ND-TGT-003", f"{len(errored)} of {len(ev.runs('ND-TGT-003'))} backends' socket tables could not "
                     f"be read: no evidence for {names(errored)}", lines, logs(ev, "ND-TGT-003"))
    return passed("ND-TGT-003", f"{len(usable)} backend(s) listen on {port}", lines)


def _describe(table: ListenerTable, port: int) -> str:
    found = table.on_port(port)
    if not found:
        return "not listened on"
    return "bound to " + ", ".join(f"{x.address} ({x.scope.value})" for x in found)
