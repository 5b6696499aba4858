"""The summary line of a check: overall state, first broken layer, most likely cause, next commands.

The most likely cause is the first entry of the runbook's `root_causes` that some check reported
as FAIL; failing that, the first failed check of the first broken layer.
"""

from __future__ import annotations

from netdoctor.catalog import Catalog
from netdoctor.model import CheckResult, Diagnosis, Facts, LayerResult, State


def common_params(f: Facts) -> dict[str, str]:
    """The template values every cause may use (catalog.COMMON_PARAMS)."""
    svc, sp = f.service, f.service_port
    params = {"namespace": f.namespace, "target": str(f.target), "source": f.source,
              "service": svc.name if svc else f.target.name, "port": f.port, "target_port": f.target_port,
              "selector": ",".join(f"{k}={v}" for k, v in svc.selector) if svc else "",
              "cluster_ip": (svc.cluster_ip or "None") if svc else "",
              "node_port": sp.node_port if sp and sp.node_port else "", "source_pod": f.source_pod or "<probe>"}
    return {k: str(v) for k, v in params.items() if v is not None}


def diagnose(layers: tuple[LayerResult, ...], catalog: Catalog, facts: Facts) -> Diagnosis:
    state = max((layer.state for layer in layers), key=lambda s: s.rank, default=State.SKIP)
    if state in (State.PASS, State.SKIP):
        return Diagnosis(state, None, None, None, f"all layers passed: {facts.source} reaches {facts.target}")
    worst = State.FAIL if state is State.FAIL else state
    broken = next(layer for layer in layers if layer.state is worst)
    result = _cause(layers, catalog, broken, worst)
    if result.cause is None:  # an ERROR, or a WARN without a cause: say what happened
        return Diagnosis(state, broken.layer, result.check_id, None, f"{result.title}: {result.message}")
    rendered = catalog.render(result.check_id, result.cause, common_params(facts) | dict(result.params))
    return Diagnosis(state, broken.layer, result.check_id, result.cause, rendered.summary,
                     rendered.remediation, rendered.commands)


def _cause(layers: tuple[LayerResult, ...], catalog: Catalog, broken: LayerResult, worst: State) -> CheckResult:
    if worst is State.FAIL:
        failing = {(c.check_id, c.cause): c for layer in layers for c in layer.checks if c.state is State.FAIL}
        for key in catalog.root_causes:
            if key in failing:
                return failing[key]
    return next(c for c in broken.checks if c.state is worst)
