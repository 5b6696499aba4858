"""The summary line of a check: overall state, the most likely cause and its layer, the failures it
explains, next commands.

The most likely cause is the first entry of the runbook's `root_causes` that some check reported
as FAIL; failing that, the first failed check of the first broken layer. The report's broken layer
is that cause's layer, and every other failed check the cause `explains` (runbooks.yaml) is marked
as its consequence. Called by `verdict.judge` once every layer is judged.
"""

from __future__ import annotations

from netdoctor.catalog import Catalog
from dataclasses import replace

from netdoctor.model import CheckResult, Diagnosis, Facts, LayerResult, State


def common_params(f: Facts) -> dict[str, str]:
    """The template values every cause may use (catalog.COMMON_PARAMS), as a command line takes them
    (`source_ref` and `backend_ref` are NS/POD, `proto_port` is TCP/8080). A value the run does not
    have is left out, and with it every command that needs it (catalog.render)."""
    svc, sp = f.service, f.service_port
    params = {"namespace": f.namespace, "target": str(f.target), "source": f.source,
              "service": svc.name if svc else None, "port": f.port, "target_port": f.target_port,
              "selector": ",".join(f"{k}={v}" for k, v in svc.selector) if svc else None,
              "cluster_ip": svc.cluster_ip if svc else None, "node_port": sp.node_port if sp else None,
              "source_pod": f.source_pod, "source_namespace": f.source_namespace, "source_ref": source_ref(f),
              "backend_ref": f"{f.namespace}/{f.backends[0].name}" if f.backends else None,
              "proto_port": f"{sp.protocol if sp else 'TCP'}/{f.target_port}" if f.target_port else None}
    return {k: str(v) for k, v in params.items() if v not in (None, "")}


def source_ref(f: Facts) -> str | None:
    """The source as a pod `netdoctor policy explain --from` can find: the --from pod, or the pod
    whose labels the probes carry; None for an anonymous probe (it is gone after the run)."""
    if f.source_pod:
        return f"{f.source_namespace}/{f.source_pod}"
    kind, _, name = (f.impersonates or "").partition("/")
    return f"{f.source_namespace}/{name}" if kind == "pod" and name else None


def diagnose(layers: tuple[LayerResult, ...], catalog: Catalog, facts: Facts) -> Diagnosis:
    state = max((layer.state for layer in layers), key=lambda s: s.rank, default=State.SKIP)
    if state in (State.PASS, State.SKIP):
        return Diagnosis(state, None, None, None, f"all layers passed: {facts.source} reaches {facts.target}")
    worst = State.FAIL if state is State.FAIL else state
    broken = next(layer for layer in layers if layer.state is worst)
    result = _cause(layers, catalog, broken, worst)
    layer = catalog.check(result.check_id).layer
    if result.cause is None:  # an ERROR, or a WARN without a cause: say what happened
        return Diagnosis(state, layer, result.check_id, None, f"{result.title}: {result.message}")
    rendered = catalog.render(result.check_id, result.cause, common_params(facts) | dict(result.params))
    explained = catalog.explained_by(result.check_id, result.cause)
    consequences = tuple(c.check_id for lr in layers for c in lr.checks
                         if c.check_id in explained and c.state in (State.FAIL, State.WARN))
    return Diagnosis(state, layer, result.check_id, result.cause, rendered.summary,
                     rendered.remediation, rendered.commands, consequences=consequences)


def mark_consequences(layers: tuple[LayerResult, ...], diagnosis: Diagnosis) -> tuple[LayerResult, ...]:
    """The layers with each check the diagnosis explains marked as its consequence."""
    if not diagnosis.consequences:
        return layers
    root = f"{diagnosis.check_id}:{diagnosis.cause}"
    return tuple(replace(lr, checks=tuple(
        replace(c, explained_by=root) if c.check_id in diagnosis.consequences and c.state in (State.FAIL, State.WARN)
        else c for c in lr.checks)) for lr in layers)


def _cause(layers: tuple[LayerResult, ...], catalog: Catalog, broken: LayerResult, worst: State) -> CheckResult:
    if worst is State.FAIL:
        failing = {(c.check_id, c.cause): c for layer in layers for c in layer.checks if c.state is State.FAIL}
        for root in catalog.root_causes:
            if root.key in failing:
                return failing[root.key]
    return next(c for c in broken.checks if c.state is worst)
