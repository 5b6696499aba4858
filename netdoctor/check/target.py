"""Parsing what the user typed for `netdoctor check`: TARGET, --from, namespaces and --port.

Called by check.command before anything touches the cluster, so bad syntax is a usage error (exit 2)
with the reason: a name too long or with characters Kubernetes refuses, a port out of range.
Whether the names exist is resolve's question.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from netdoctor.errors import UsageError
from netdoctor.model import Kind, Ref

_KINDS = {
    "svc": Kind.SERVICE, "service": Kind.SERVICE, "services": Kind.SERVICE,
    "pod": Kind.POD, "pods": Kind.POD, "po": Kind.POD,
    "deploy": Kind.DEPLOYMENT, "deployment": Kind.DEPLOYMENT, "deployments": Kind.DEPLOYMENT,
}
# DNS-1123 subdomain (pods, deployments) and DNS-1035 label (services); namespaces are DNS-1123 labels.
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_SERVICE_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_PORT_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([-a-z0-9]*[a-z0-9])?$")  # IANA_SVC_NAME
SUBDOMAIN_MAX, LABEL_MAX, PORT_NAME_MAX = 253, 63, 15
PROTOCOLS = ("TCP", "UDP", "SCTP")


@dataclass(frozen=True)
class PortArg:
    """--port as typed: a number, a port name, or PROTO/NUM (`UDP/53`)."""

    text: str
    number: int | None = None
    name: str | None = None
    protocol: str | None = None  # only with PROTO/NUM

    def matches(self, port: int, name: str | None, protocol: str) -> bool:
        """Whether a Service (or container) port is the one meant."""
        if self.name is not None:
            return name == self.name
        return port == self.number and self.protocol in (None, protocol)


def parse_target(text: str) -> Ref:
    """`svc/NAME`, `NAME` (a Service), `pod/NAME` or `deploy/NAME`."""
    return _parse(text, "target", set(Kind))


def parse_source(text: str) -> Ref:
    """`pod/NAME` or `deploy/NAME`, or either in another namespace (`ops/deploy/toolbox`): the
    client whose view matters."""
    namespace, slash, rest = text.partition("/")
    if slash and rest.count("/") == 1:
        parse_namespace(namespace, "--from")
        ref = _parse(rest, "source", {Kind.POD, Kind.DEPLOYMENT})
        return Ref(ref.kind, ref.name, namespace)
    return _parse(text, "source", {Kind.POD, Kind.DEPLOYMENT})


def parse_namespace(text: str, option: str) -> str:
    """A namespace name as Kubernetes accepts it (a DNS label, at most 63 characters)."""
    if len(text) > LABEL_MAX:
        raise UsageError(f"{option} {_shown(text)}: a namespace name is at most {LABEL_MAX} characters, this one "
                         f"has {len(text)}")
    if not _LABEL.match(text):
        raise UsageError(f"{option} {text!r} is not a valid namespace name (lowercase letters, digits and '-', "
                         f"starting and ending with a letter or digit)")
    return text


def parse_port(text: str) -> PortArg:
    """A port number (1-65535), a port name, or PROTO/NUM."""
    protocol, slash, rest = text.rpartition("/")
    if slash:
        if protocol.upper() not in PROTOCOLS:
            raise UsageError(f"--port {text!r}: the protocol must be one of {', '.join(PROTOCOLS)} (e.g. UDP/53)")
        return PortArg(text, _port_number(rest, text), protocol=protocol.upper())
    if text.isdigit():
        return PortArg(text, _port_number(text, text))
    if len(text) > PORT_NAME_MAX or not _PORT_NAME.match(text):
        raise UsageError(f"--port {text!r} is neither a port number (1-65535), a port name (at most "
                         f"{PORT_NAME_MAX} lowercase letters, digits and '-') nor PROTO/NUM (e.g. UDP/53)")
    return PortArg(text, name=text)


def _port_number(digits: str, text: str) -> int:
    number = int(digits) if digits.isdigit() else 0
    if not 1 <= number <= 65535:
        raise UsageError(f"--port {text!r}: a port number is between 1 and 65535")
    return number


def _parse(text: str, what: str, allowed: set[Kind]) -> Ref:
    kind_text, _, name = text.rpartition("/")
    kind = _KINDS.get(kind_text.lower()) if kind_text else Kind.SERVICE
    if kind is None or kind not in allowed:
        forms = ", ".join(sorted(f"{k.value}/NAME" for k in allowed))
        raise UsageError(f"{what} {_shown(text)} is not one of: {forms}")
    _check_name(name, kind, f"{what} {_shown(text)}")
    return Ref(kind, name)


def _check_name(name: str, kind: Kind, where: str) -> None:
    """Kubernetes' own rules: a Service name is a DNS label (at most 63 characters, starting with a
    letter), pod and Deployment names DNS subdomains (at most 253)."""
    service = kind is Kind.SERVICE
    limit, pattern = (LABEL_MAX, _SERVICE_NAME) if service else (SUBDOMAIN_MAX, _SUBDOMAIN)
    noun = {Kind.SERVICE: "a Service", Kind.POD: "a pod", Kind.DEPLOYMENT: "a Deployment"}[kind]
    if len(name) > limit:
        raise UsageError(f"{where}: {noun} name is at most {limit} characters, this one has {len(name)}")
    if not pattern.match(name):
        rule = "lowercase letters, digits and '-', starting with a letter" if service else \
            "lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"
        raise UsageError(f"{where}: {name!r} is not a valid name for {noun} ({rule})")


def _shown(text: str, limit: int = 40) -> str:
    """The user's text quoted, cut short when it is too long to read in one line."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"… ({len(text)} characters)"
