"""A smoke file: what `netdoctor smoke -f FILE` reads, validates and turns into plans.

Called by check.smoke_command. `load` parses the YAML, checks it against the shipped JSON Schema
(netdoctor/schemas/smoke-file.schema.json, printed by `smoke --schema` or `schema smoke-file`) and then each value's own
syntax, so a bad file is refused with FILE:LINE and the field before the cluster is asked. `build`
resolves every expectation against the cluster into one or more Units (a Plan with its Facts) that
probe.runner.run_many runs on shared probes:

- `services`: the whole check of the Service (optionally from a source), as `check` plans it;
- `flows` to a Service: the source's connections to each backend pod IP and to the Service IP; to a
  workload or a pod selector: to each pod IP on the pod's own port (listeners too for an allowed
  flow; one attempt each for a denied one);
  to a CIDR: one connection to its first address;
- `names`: the name looked up through the source's resolv.conf (search path, ndots).
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml

from netdoctor.errors import ClusterError, InputFileError, UsageError
from netdoctor.labels import SelectorError, parse as parse_selector
from netdoctor.model import (
    CaptureMode, DnsQuery, ExpectKind, Expectation, Facts, Kind, Layer, Plan, PlannedProbe, ProbePurpose, Ref, Step,
    TcpConnect, UdpExchange,
)
from netdoctor.check.target import parse_namespace, parse_port, parse_source, parse_target

SCHEMA_NAME = "smoke-file"  # netdoctor/schemas/smoke-file.schema.json
FLOW_CHECKS = frozenset({"ND-TGT-003", "ND-POD-001", "ND-SVC-001"})
FLOW_LAYERS = (Layer.TARGET, Layer.ENDPOINTS, Layer.POD, Layer.SERVICE, Layer.POLICY)
SOURCE = "source"
LOOKUP_ATTEMPTS = 3


def schema() -> dict:
    from netdoctor import schemas

    return json.loads(schemas.schema_file(SCHEMA_NAME).read_text())


# --- the file ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    """A flow's `from` or `to`, its names checked: one of workload, selector (in namespace),
    namespace alone (from), service, cidr (to)."""

    workload: Ref | None = None
    selector: str | None = None
    namespace: str | None = None
    service: Ref | None = None
    cidr: str | None = None

    def __str__(self) -> str:
        ns = f"{self.namespace}/" if self.namespace else ""
        if self.workload:
            return f"{self.workload.namespace + '/' if self.workload.namespace else ns}{self.workload}"
        if self.service:
            return f"{self.service.namespace + '/' if self.service.namespace else ns}{self.service}"
        if self.selector:
            return f"{ns}pods {self.selector}"
        return self.cidr or f"namespace {self.namespace}"


@dataclass(frozen=True)
class Item:
    """One expectation with what it needs to be planned."""

    expectation: Expectation
    source: Peer | None = None
    target: Peer | None = None
    port: str | None = None
    name: str | None = None  # a name to resolve


@dataclass(frozen=True)
class SmokeFile:
    path: str
    namespace: str | None
    items: tuple[Item, ...]


def load(path: Path) -> SmokeFile:
    """The file parsed and validated; every problem is an InputFileError 'FILE:LINE: field: why'."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        node = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise InputFileError(f"{path}:{mark.line + 1 if mark else 1}: not valid YAML "
                             f"({getattr(exc, 'problem', None) or exc})") from None
    data = yaml.safe_load(text) if node is not None else None
    lines = _lines(node) if node is not None else {}

    def fail(where: tuple, message: str):
        field = _field(where)
        raise InputFileError(f"{path}:{_line(lines, where)}: {field + ': ' if field else ''}{message}")

    if not isinstance(data, dict):
        fail((), "a smoke file is a mapping (apiVersion: netdoctor.io/v1, kind: Smoke, services/flows/names)")
    problem = _validate(data, schema(), schema(), ())
    if problem:
        fail(*problem)
    return _items(str(path), data, lines, fail)


def _items(path: str, data: dict, lines: dict, fail) -> SmokeFile:
    namespace = data.get("namespace")
    items = []
    for i, entry in enumerate(data.get("services") or ()):
        where = ("services", i)
        service = _checked(fail, where + ("service",), lambda: _service(entry["service"]))
        source = _checked(fail, where + ("from",), lambda: _workload(entry["from"])) if "from" in entry else None
        port = _port(fail, where, entry.get("port"))
        title = f"{_ns(service.namespace, namespace)}/svc/{service.name} healthy" + (
            f" from {source}" if source else "")
        items.append(Item(Expectation(ExpectKind.HEALTHY, _field(where), _line(lines, where), title,
                                      entry.get("name", "")), Peer(workload=source.workload) if source else None,
                          Peer(service=service), port))
    for i, entry in enumerate(data.get("flows") or ()):
        where = ("flows", i)
        source = _peer(fail, where + ("from",), entry["from"], ("workload", "selector", "namespace"))
        target = _peer(fail, where + ("to",), entry["to"], ("service", "workload", "selector", "cidr"))
        port = _port(fail, where, entry["port"])
        kind = ExpectKind(entry["expect"])
        title = f"{_shown(source, namespace)} → {_shown(target, namespace)} {port}"
        items.append(Item(Expectation(kind, _field(where), _line(lines, where), title, entry.get("name", "")),
                          source, target, port))
    for i, entry in enumerate(data.get("names") or ()):
        where = ("names", i)
        source = _checked(fail, where + ("from",), lambda: _workload(entry["from"])) if "from" in entry else None
        title = f"{entry['name']} resolves" + (f" from {source}" if source else "")
        items.append(Item(Expectation(ExpectKind.RESOLVE, _field(where), _line(lines, where), title),
                          source, None, None, entry["name"]))
    return SmokeFile(path, namespace, tuple(items))


def _ns(namespace: str | None, default: str | None) -> str:
    return namespace or default or "(current)"


def _shown(peer: Peer, default: str | None) -> str:
    if peer.cidr or peer.namespace or (peer.workload and peer.workload.namespace) or \
            (peer.service and peer.service.namespace) or not default:
        return str(peer)
    return f"{default}/{peer}"


def _checked(fail, where: tuple, parse):
    try:
        return parse()
    except (UsageError, SelectorError, ValueError) as exc:
        fail(where, getattr(exc, "message", None) or str(exc))


def _service(text: str) -> Ref:
    namespace, _, name = text.rpartition("/")
    if namespace:
        parse_namespace(namespace, "namespace")
    ref = parse_target(f"svc/{name}")
    return Ref(Kind.SERVICE, ref.name, namespace or None)


def _workload(text: str) -> Peer:
    return Peer(workload=parse_source(text))


def _port(fail, where: tuple, value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    _checked(fail, where + ("port",), lambda: parse_port(text))
    return text


def _peer(fail, where: tuple, entry: dict, kinds: tuple[str, ...]) -> Peer:
    """Exactly one kind of peer; `namespace` goes with a selector (or stands alone in `from`)."""
    given = [k for k in kinds if k in entry and k != "namespace"]
    if "namespace" in kinds and not given and "namespace" in entry:
        given = ["namespace"]
    if len(given) != 1:
        fail(where, f"give exactly one of {', '.join(kinds)}" + (f" (got {', '.join(given)})" if given else ""))
    kind = given[0]
    if "namespace" in entry and kind not in ("selector", "namespace"):
        fail(where + ("namespace",), f"namespace goes with selector; put it in {kind} (NAMESPACE/…)")
    namespace = entry.get("namespace")
    value = entry[kind]
    if kind == "workload":
        return _checked(fail, where + (kind,), lambda: _workload(value))
    if kind == "service":
        return Peer(service=_checked(fail, where + (kind,), lambda: _service(value)))
    if kind == "selector":
        _checked(fail, where + (kind,), lambda: parse_selector(value))
        return Peer(selector=value, namespace=namespace)
    if kind == "cidr":
        _checked(fail, where + (kind,), lambda: ipaddress.ip_network(value, strict=False))
        return Peer(cidr=value)
    return Peer(namespace=namespace)


# --- a subset of JSON Schema (what the shipped schema uses), with the path of the first problem ---


def _validate(value: Any, rule: dict, root: dict, where: tuple) -> tuple[tuple, str] | None:
    if "$ref" in rule:
        rule = root["$defs"][rule["$ref"].rsplit("/", 1)[-1]]
    types = rule.get("type")
    if types is not None and not any(_is(value, t) for t in ([types] if isinstance(types, str) else types)):
        return where, f"must be {' or '.join([types] if isinstance(types, str) else types)}"
    if "enum" in rule and value not in rule["enum"]:
        return where, f"must be {' or '.join(map(str, rule['enum']))}"
    if isinstance(value, str):
        if "pattern" in rule and not re.search(rule["pattern"], value):
            return where, f"{value!r} is not valid ({rule.get('description', 'see netdoctor smoke --schema')})"
        if len(value) < rule.get("minLength", 0) or len(value) > rule.get("maxLength", len(value)):
            return where, f"{value!r} has the wrong length"
    if isinstance(value, int) and not isinstance(value, bool) and not \
            rule.get("minimum", value) <= value <= rule.get("maximum", value):
        return where, f"{value} is out of range {rule['minimum']}-{rule['maximum']}"
    if isinstance(value, dict):
        return _validate_object(value, rule, root, where)
    if isinstance(value, list):
        if len(value) < rule.get("minItems", 0):
            return where, "must not be empty"
        for i, item in enumerate(value):
            found = _validate(item, rule.get("items", {}), root, where + (i,))
            if found:
                return found
    return None


def _validate_object(value: dict, rule: dict, root: dict, where: tuple) -> tuple[tuple, str] | None:
    known = rule.get("properties", {})
    for key in value:
        if rule.get("additionalProperties") is False and key not in known:
            return where + (key,), f"unknown field (known: {', '.join(known)})"
    for key in rule.get("required", ()):
        if key not in value:
            return where, f"missing {key!r}"
    if len(value) < rule.get("minProperties", 0):
        return where, "must not be empty"
    if "anyOf" in rule and not any(all(k in value for k in alt.get("required", ())) for alt in rule["anyOf"]):
        return where, "give at least one of " + ", ".join(k for alt in rule["anyOf"] for k in alt["required"])
    for key, item in value.items():
        found = _validate(item, known.get(key, {}), root, where + (key,))
        if found:
            return found
    return None


def _is(value: Any, kind: str) -> bool:
    return {"object": isinstance(value, dict), "array": isinstance(value, list),
            "string": isinstance(value, str), "boolean": isinstance(value, bool),
            "integer": isinstance(value, int) and not isinstance(value, bool)}[kind]


def _lines(node, where: tuple = ()) -> dict[tuple, int]:
    """The line (1-based) of every value in the YAML, by its path."""
    found = {where: node.start_mark.line + 1}
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            found.update(_lines(value, where + (key.value,)))
            found[where + (key.value,)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            found.update(_lines(value, where + (i,)))
    return found


def _line(lines: dict[tuple, int], where: tuple) -> int:
    while where not in lines and where:
        where = where[:-1]
    return lines.get(where, 1)


def _field(where: tuple) -> str:
    text = ""
    for part in where:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


# --- the plans ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """A plan of the shared run and the expectation it serves (a flow to a selector has one per pod)."""

    item: Item
    facts: Facts
    plan: Plan
    whole: bool  # a whole check (a Service's health): judged by every layer


def build(kube, smoke: SmokeFile, options) -> list[Unit]:
    """Each expectation's plans, from the cluster's objects. A name or namespace that does not
    exist ends the run before anything is created (exit 3)."""
    from netdoctor.check import plan as planner, resolve

    default = smoke.namespace or kube.namespace
    units = []
    for item in smoke.items:
        kind = item.expectation.kind
        if kind is ExpectKind.HEALTHY:
            ref, source = item.target.service, _source_ref(item.source)
            if source is not None and source.namespace is None:
                source = replace(source, namespace=default)
            facts = resolve.resolve(kube, resolve.Request(Ref(Kind.SERVICE, ref.name), ref.namespace or default,
                                                          source, _port_arg(item.port)))
            units.append(Unit(item, facts, planner.build(facts, options), True))
        elif kind is ExpectKind.RESOLVE:
            facts = _source_facts(kube, item.source, default, resolve)
            units.append(Unit(item, facts, _lookup_plan(facts, item.name, options), False))
        elif item.target.cidr:
            facts = _source_facts(kube, item.source, default, resolve)
            units.append(Unit(item, facts, _cidr_plan(facts, item.target.cidr, item.port, options), False))
        else:
            for target, namespace in _destinations(kube, item.target, default):
                facts = resolve.resolve(kube, _flow_request(kube, item.source, target, namespace, default, item.port))
                units.append(Unit(item, facts, _flow_plan(planner.build(facts, options),
                                                          kind is ExpectKind.DENY), False))
    return units


def _port_arg(port: str | None):
    return parse_port(port) if port is not None else None


def _source_ref(peer: Peer | None) -> Ref | None:
    return peer.workload if peer else None


def _flow_request(kube, source: Peer, target: Ref, namespace: str, default: str, port: str | None):
    """The check request of a flow; to a workload or pods, their own ports (no Service IP)."""
    from netdoctor.check.resolve import Request

    pods_only = target.kind is not Kind.SERVICE
    if source.workload:
        ref = source.workload if source.workload.namespace else replace(source.workload, namespace=default)
        return Request(target, namespace, ref, _port_arg(port), pods_only=pods_only)
    if source.selector:
        return Request(target, namespace, _selected_pod(kube, source.namespace or default, source.selector),
                       _port_arg(port), pods_only=pods_only)
    return Request(target, namespace, None, _port_arg(port), anonymous_in=source.namespace, pods_only=pods_only)


def _selected_pod(kube, namespace: str, selector: str) -> Ref:
    running = [p for p in kube.pods(namespace, selector) if p.phase == "Running"]
    if not running:
        raise ClusterError(f"no Running pod in namespace {namespace!r} matches {selector!r}",
                           hint=f"kubectl -n {namespace} get pods -l '{selector}'")
    return Ref(Kind.POD, sorted(running, key=lambda p: p.name)[0].name, namespace)


def _destinations(kube, target: Peer, default: str) -> list[tuple[Ref, str]]:
    """The check targets of a flow's `to`: the Service or the workload, or each selected pod."""
    if target.service:
        return [(Ref(Kind.SERVICE, target.service.name), target.service.namespace or default)]
    if target.workload:
        return [(Ref(target.workload.kind, target.workload.name), target.workload.namespace or default)]
    namespace = target.namespace or default
    pods = sorted(p.name for p in kube.pods(namespace, target.selector))
    if not pods:
        raise ClusterError(f"no pod in namespace {namespace!r} matches {target.selector!r}",
                           hint=f"kubectl -n {namespace} get pods -l '{target.selector}'")
    return [(Ref(Kind.POD, name), namespace) for name in pods]


def _flow_plan(full: Plan, deny: bool) -> Plan:
    """A check's plan cut to the flow: the source's connections to each backend and to the Service
    IP (with the backends' listeners for an allowed flow); a denied flow tries each once, so 20
    denials cost one timeout together."""
    steps = []
    for step in full.steps:
        if step.check_id not in FLOW_CHECKS or step.probe not in (SOURCE, None) or \
                (deny and step.check_id == "ND-TGT-003"):
            continue
        if deny and isinstance(step.action, TcpConnect):
            step = replace(step, action=replace(step.action, attempts=1, until_covered=0),
                           title=step.title.split(" ×")[0])
        steps.append(step)
    used = {s.probe for s in steps}
    probes = tuple(p for p in full.probes if p.role in used or p.purpose is ProbePurpose.NODE_CAPTURE)
    return replace(full, probes=probes, steps=tuple(steps))


def _source_facts(kube, source: Peer | None, default: str, resolve) -> Facts:
    """Facts about the source alone (a lookup, a flow to a CIDR): its namespace, labels and node."""
    if source is not None and (source.workload or source.selector):
        if source.workload:
            ref = source.workload
            namespace = ref.namespace or default
        else:
            namespace = source.namespace or default
            ref = _selected_pod(kube, namespace, source.selector)
        pod = resolve.source_pod(kube, namespace, replace(ref, namespace=None))
        return Facts(namespace, Ref(Kind.POD, pod.name), f"pod/{pod.name} on {pod.node_name}", pod.node_name,
                     pod.name, namespace, None, None, source_labels=tuple(sorted(pod.labels)),
                     impersonates=f"pod/{pod.name}", nodes=tuple(kube.nodes()))
    namespace = (source.namespace if source else None) or default
    nodes = tuple(kube.nodes())
    node = next((n.name for n in nodes if n.ready), None)
    return Facts(namespace, Ref(Kind.POD, "probe"), f"a probe in {namespace} on {node or 'any node'}", node, None,
                 namespace, None, None, source_labels=resolve.PROBE_LABELS, nodes=nodes)


def _source_probes(f: Facts, options) -> tuple[PlannedProbe, ...]:
    capture = options.capture is not CaptureMode.OFF
    source = PlannedProbe(SOURCE, f.source_node, f.source_namespace, f.source_labels, f.impersonates, capture=capture)
    from netdoctor.check.plan import role_name

    nodes = (PlannedProbe(role_name("capture", f.source_node), f.source_node,
                          options.capture_namespace or f.source_namespace, purpose=ProbePurpose.NODE_CAPTURE),) \
        if capture and f.source_node else ()
    return (source, *nodes)


def _lookup_plan(f: Facts, name: str, options) -> Plan:
    step = Step(f"lookup:{name}", "ND-DNS-002", Layer.DNS, SOURCE,
                DnsQuery(None, name, "A", attempts=LOOKUP_ATTEMPTS, search=True), title=f"resolve {name}")
    return Plan(_source_probes(f, options), (step,), (), options.capture)


def cidr_address(cidr: str) -> str:
    """The address a flow to a CIDR is tried on: its only one (/32), else its first host."""
    network = ipaddress.ip_network(cidr, strict=False)
    return str(network.network_address if network.num_addresses == 1 else next(network.hosts()))


def _cidr_plan(f: Facts, cidr: str, port: str | None, options) -> Plan:
    arg = parse_port(port) if port else None
    if arg is None or arg.number is None:
        raise UsageError(f"a flow to {cidr} needs a port number (TCP/NUM): names are a pod's")
    address = cidr_address(cidr)
    action = UdpExchange(address, arg.number) if arg.protocol == "UDP" else TcpConnect(address, arg.number)
    step = Step(f"cidr:{cidr}", "ND-POD-001", Layer.POD, SOURCE, action, title=f"source → {address}:{arg.number}")
    return Plan(_source_probes(f, options), (step,), (), options.capture)
