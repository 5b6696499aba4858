"""The resource types the lab API serves: plural name, group, version, kind, scope.

Read by the store (to fill apiVersion/kind and know the scope), by the server (routing and the
discovery documents) and by admission (kind names in error messages). Static data only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ResourceType:
    plural: str
    kind: str
    group: str
    version: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    default_propagation: str = "Background"  # a DELETE without propagationPolicy

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources


RESOURCES: dict[str, ResourceType] = {
    r.plural: r
    for r in (
        ResourceType("namespaces", "Namespace", "", "v1", False, ("ns",), ("status",)),
        ResourceType("nodes", "Node", "", "v1", False, ("no",), ("status",)),
        ResourceType(
            "pods", "Pod", "", "v1", True, ("po",), ("status", "log", "exec", "attach", "ephemeralcontainers")
        ),
        ResourceType("services", "Service", "", "v1", True, ("svc",), ("status",)),
        ResourceType("endpoints", "Endpoints", "", "v1", True, ("ep",)),
        ResourceType("configmaps", "ConfigMap", "", "v1", True, ("cm",)),
        ResourceType("events", "Event", "", "v1", True, ("ev",)),
        ResourceType("endpointslices", "EndpointSlice", "discovery.k8s.io", "v1", True),
        ResourceType("networkpolicies", "NetworkPolicy", "networking.k8s.io", "v1", True, ("netpol",)),
        ResourceType("deployments", "Deployment", "apps", "v1", True, ("deploy",), ("status",)),
        ResourceType("replicasets", "ReplicaSet", "apps", "v1", True, ("rs",), ("status",)),
        ResourceType("daemonsets", "DaemonSet", "apps", "v1", True, ("ds",), ("status",)),  # objects only: no controller
        # batch/v1 Jobs orphan their dependents unless told otherwise, for backward compatibility.
        ResourceType("jobs", "Job", "batch", "v1", True, (), ("status",), "Orphan"),
    )
}


def lookup(group: str, version: str, plural: str) -> ResourceType | None:
    rtype = RESOURCES.get(plural)
    if rtype is None or rtype.group != group or rtype.version != version:
        return None
    return rtype


def groups() -> dict[str, str]:
    """Named API groups (not core) and their only version."""
    return {r.group: r.version for r in RESOURCES.values() if r.group}
