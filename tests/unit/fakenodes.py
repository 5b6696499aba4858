"""Node reads for the unit tests' fake clusters, answered as the API server would: label and field
selectors (`metadata.name!=…`, `spec.unschedulable!=true`) and a `first` limit, over Node objects."""

from __future__ import annotations

from netdoctor.cluster.kube import NotFound
from netdoctor.labels import parse


def select(nodes, label_selector=None, field_selector=None, first=None, log=None):
    """The nodes matching the selectors, as Kube.nodes answers; each call is appended to `log`."""
    if log is not None:
        log.append((label_selector, field_selector, first))
    labels = parse(label_selector or "")
    terms = [t.split("!=") for t in (field_selector or "").split(",") if t]
    found = [n for n in nodes if labels.matches(n.label_map) and all(_differs(n, path, value) for path, value in terms)]
    return found[:first] if first is not None else found


def _differs(node, path: str, value: str) -> bool:
    actual = {"metadata.name": node.name, "spec.unschedulable": str(node.unschedulable).lower()}[path]
    return actual != value


def named(nodes, name):
    found = next((n for n in nodes if n.name == name), None)
    if found is None:
        raise NotFound("nodes", name, None, f'nodes "{name}" not found')
    return found
