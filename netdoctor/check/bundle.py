"""The API objects a verdict used, as the API serves them, for `check --bundle`.

Called by check.command after the judge: the target's Service and EndpointSlices, its backend pods,
the --from pod, the nodes, the NetworkPolicies of the namespaces that decide the flow, and the
cluster DNS Service and pods. Secrets are never read; what could hold one is taken out of the
objects (container env values, the last-applied annotation), and managedFields are dropped.
"""

from __future__ import annotations

from netdoctor.errors import ClusterError
from netdoctor.model import Facts

REDACTED = "<redacted by netdoctor>"
_DNS_NAMESPACE = "kube-system"


def objects(kube, facts: Facts) -> tuple[list[dict], list[str]]:
    """The objects, and a line for each that could not be read (the bundle says so)."""
    wanted = []
    if facts.service is not None:
        wanted.append(("Service", facts.namespace, facts.service.name))
    wanted += [("EndpointSlice", s.namespace, s.name) for s in facts.slices or ()]
    wanted += [("Pod", p.namespace, p.name) for p in facts.backends]
    if facts.source_pod:
        wanted.append(("Pod", facts.source_namespace, facts.source_pod))
    wanted += [("Node", None, n.name) for n in facts.nodes]
    if facts.dns_service is not None:
        wanted.append(("Service", _DNS_NAMESPACE, facts.dns_service.name))
    wanted += [("Pod", p.namespace, p.name) for p in facts.dns_backends]
    found, missing = [], []
    for kind, namespace, name in dict.fromkeys(wanted):
        try:
            found.append(_cleaned(kube.get_object(kind, namespace, name)))
        except ClusterError as exc:
            missing.append(f"{kind} {namespace + '/' if namespace else ''}{name}: {exc.message}")
    for namespace in sorted({facts.namespace, facts.source_namespace}):
        try:
            found += [_cleaned(o) for o in kube.list_objects("NetworkPolicy", namespace)]
        except ClusterError as exc:
            missing.append(f"NetworkPolicies in {namespace}: {exc.message}")
    return [o for o in found if o.get("kind") != "Secret"], missing


def _cleaned(obj: dict) -> dict:
    """A copy without managedFields, the last-applied annotation and container env values."""
    obj = {**obj, "metadata": {k: v for k, v in (obj.get("metadata") or {}).items() if k != "managedFields"}}
    annotations = obj["metadata"].get("annotations")
    if annotations:
        obj["metadata"]["annotations"] = {k: v for k, v in annotations.items()
                                          if k != "kubectl.kubernetes.io/last-applied-configuration"}
    spec = obj.get("spec")
    if obj.get("kind") == "Pod" and isinstance(spec, dict):
        obj["spec"] = {**spec, **{key: [_without_env(c) for c in spec.get(key) or []]
                                  for key in ("containers", "initContainers", "ephemeralContainers") if key in spec}}
    return obj


def _without_env(container: dict) -> dict:
    env = [{**{k: v for k, v in e.items() if k not in ("value", "valueFrom")}, "value": REDACTED}
           for e in container.get("env") or []]
    return {**container, **({"env": env} if "env" in container else {})}
