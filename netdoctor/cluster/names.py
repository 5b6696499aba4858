"""Names for shell completion: the kubeconfig's contexts, and the names of a kind in the cluster.

Called by `kubectl_complete-netdoctor` (netdoctor.completions) while the user presses TAB: every
read is short (COMPLETION_TIMEOUT per API call, the first COMPLETION_LIMIT names) and a failure
(no kubeconfig, unreachable, forbidden) is an empty answer, never a message on the terminal.
"""

from __future__ import annotations

import os
from typing import Mapping

from netdoctor.errors import NetdoctorError

COMPLETION_TIMEOUT = 2.0  # seconds an API call may take while a user waits on TAB
COMPLETION_LIMIT = 500  # names offered at most
CLUSTER_SCOPED = ("Namespace", "Node")


def contexts(kubeconfig: str | None, environ: Mapping[str, str]) -> list[str]:
    """The context names of the kubeconfig files kubectl would read (no API call)."""
    import yaml

    paths = kubeconfig or environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    found: list[str] = []
    for path in filter(None, paths.split(os.pathsep)):
        try:
            with open(path) as file:
                config = yaml.safe_load(file) or {}
        except (OSError, yaml.YAMLError):
            continue
        found += [c["name"] for c in config.get("contexts") or [] if isinstance(c, dict) and c.get("name")]
    return sorted(set(found))


def names(kind: str, namespace: str | None, kubeconfig: str | None, context: str | None,
          environ: Mapping[str, str]) -> list[str]:
    """The names of `kind` (Namespace, Service, Deployment, Pod, Node) in `namespace` (None: the
    context's namespace for a namespaced kind); [] when the cluster cannot tell."""
    from netdoctor.cluster.kube import Kube

    try:
        kube = Kube.connect(kubeconfig, context, environ=environ, request_timeout=COMPLETION_TIMEOUT)
        where = None if kind in CLUSTER_SCOPED else namespace or kube.namespace
        objects = kube.list_objects(kind, where, first=COMPLETION_LIMIT)
    except NetdoctorError:
        return []
    return sorted(o["metadata"]["name"] for o in objects)
