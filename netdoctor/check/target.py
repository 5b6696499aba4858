"""Parsing TARGET and SOURCE arguments of `netdoctor check` into a `Ref`.

Called by check.command before anything touches the cluster, so bad syntax is a usage error (exit 2).
"""

from __future__ import annotations

import re

from netdoctor.errors import UsageError
from netdoctor.model import Kind, Ref

_KINDS = {
    "svc": Kind.SERVICE, "service": Kind.SERVICE, "services": Kind.SERVICE,
    "pod": Kind.POD, "pods": Kind.POD, "po": Kind.POD,
    "deploy": Kind.DEPLOYMENT, "deployment": Kind.DEPLOYMENT, "deployments": Kind.DEPLOYMENT,
}
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")


def parse_target(text: str) -> Ref:
    """`svc/NAME`, `NAME` (a Service), `pod/NAME` or `deploy/NAME`."""
    return _parse(text, "target", set(Kind))


def parse_source(text: str) -> Ref:
    """`pod/NAME` or `deploy/NAME`: the client whose view matters."""
    return _parse(text, "source", {Kind.POD, Kind.DEPLOYMENT})


def _parse(text: str, what: str, allowed: set[Kind]) -> Ref:
    kind_text, _, name = text.rpartition("/")
    kind = _KINDS.get(kind_text.lower()) if kind_text else Kind.SERVICE
    if kind is None or kind not in allowed:
        forms = ", ".join(sorted(f"{k.value}/NAME" for k in allowed))
        raise UsageError(f"{what} {text!r} is not one of: {forms}")
    if not _NAME.match(name):
        raise UsageError(f"{what} {text!r}: {name!r} is not a valid Kubernetes object name")
    return Ref(kind, name)
