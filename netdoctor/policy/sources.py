"""Where `netdoctor policy` gets its objects when no -f is given: the live cluster.

Called by policy/cli.py (files go through netdoctor.manifests). Live mode goes through our own
wrapper, netdoctor.cluster.kube.Kube, imported only when connecting; tests substitute `connect` with a
fake Kube.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Protocol


class ObjectLister(Protocol):
    """What live mode needs of netdoctor.cluster.kube.Kube."""

    namespace: str

    def list_objects(self, kind: str, namespace: str | None) -> list[dict]:
        """API-shaped dicts, `kind` included, of one namespace or all (None)."""


def connect(kubeconfig: str | None, context: str | None, environ: Mapping[str, str]) -> ObjectLister:
    from netdoctor.cluster.kube import Kube

    return Kube.connect(kubeconfig, context, environ=environ)


def live_objects(kube: ObjectLister, namespaces: Iterable[str] | None) -> list[dict]:
    """All Namespaces, and the Pods and NetworkPolicies of `namespaces` (None: every namespace)."""
    objects = list(kube.list_objects("Namespace", None))
    for namespace in [None] if namespaces is None else sorted(set(namespaces)):
        for kind in ("Pod", "NetworkPolicy"):
            objects.extend(kube.list_objects(kind, namespace))
    return objects
