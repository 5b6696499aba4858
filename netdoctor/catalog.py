"""The check catalog: IDs, titles, causes, remediation and layer order, loaded from checks/*.yaml.

Read once per `netdoctor check` by check.command and handed to the judge (titles, root-cause order) and
the renderers (titles, remediation). Validated on load: an unknown key, a missing field or a
duplicate ID is a CatalogError naming the file and the entry. In a wheel the YAML ships as the
package `netdoctor.checks`; in an editable install it is read from the repository's checks/ dir.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Mapping

import yaml

from netdoctor.errors import NetdoctorError
from netdoctor.exitcodes import ExitCode
from netdoctor.model import Layer

# Keys every template may use; judge.diagnose fills them from the Facts (see `Catalog.render`). A run
# may lack some (no --from: no source_pod): a command that needs one is not printed.
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser: a tenth of the time
COMMON_PARAMS = frozenset(
    {"namespace", "target", "service", "port", "target_port", "source", "source_pod",
     "selector", "cluster_ip", "node_port", "source_namespace", "source_ref", "backend_ref", "proto_port"}
)


class CatalogError(NetdoctorError):
    """The shipped check catalog is malformed: a packaging or editing bug, not a user error."""

    exit_code = ExitCode.PROBES


@dataclass(frozen=True)
class Cause:
    key: str
    summary: str
    remediation: str
    commands: tuple[str, ...]
    params: tuple[str, ...]


@dataclass(frozen=True)
class CheckDef:
    id: str
    layer: Layer
    title: str
    causes: Mapping[str, Cause]


@dataclass(frozen=True)
class LayerDef:
    layer: Layer
    title: str
    requires: tuple[Layer, ...]


@dataclass(frozen=True)
class Rendered:
    summary: str
    remediation: str
    commands: tuple[str, ...]


@dataclass(frozen=True)
class HopDef:
    """checks/hops.yaml: the hop-by-hop verdict's ID, title and causes."""

    id: str
    title: str
    causes: Mapping[str, Cause]


HOP_PARAMS = frozenset({"what", "dst", "hop", "last", "node", "sender", "icmp", "answer", "size", "tunnel", "from", "why", "proxy"})


@dataclass(frozen=True)
class RootCause:
    """runbooks.yaml: a cause that, when some check reports it, is the most likely root cause
    (earlier entries first), and the checks whose failures it explains (they fail as its
    consequences, not on their own)."""

    check_id: str
    cause: str
    explains: frozenset[str] = frozenset()

    @property
    def key(self) -> tuple[str, str]:
        return self.check_id, self.cause


@dataclass(frozen=True)
class Catalog:
    checks: Mapping[str, CheckDef]
    layers: tuple[LayerDef, ...]
    root_causes: tuple[RootCause, ...]  # most likely first
    hops: HopDef | None = None

    def check(self, check_id: str) -> CheckDef:
        return self.checks[check_id]

    def layer(self, layer: Layer) -> LayerDef:
        return next(d for d in self.layers if d.layer is layer)

    def explained_by(self, check_id: str, cause: str | None) -> frozenset[str]:
        """The check IDs whose failures the cause `check_id:cause` explains (none when it is no
        root cause of the runbook)."""
        root = next((r for r in self.root_causes if r.key == (check_id, cause)), None)
        return root.explains if root else frozenset()

    def render(self, check_id: str, cause: str, params: Mapping[str, str]) -> Rendered:
        """A cause's texts with its placeholders filled (a missing value shows as `<name>`); a command
        that needs a value the run does not have (missing or empty) is left out: every command
        printed runs as printed."""
        c = self.hops.causes[cause] if self.hops and check_id == self.hops.id else self.checks[check_id].causes[cause]
        values = _Defaulting(params)
        fill = lambda text: string.Formatter().vformat(text, (), values)  # noqa: E731
        have = {key for key, value in values.items() if value}
        return Rendered(fill(c.summary), fill(c.remediation),
                        tuple(fill(x) for x in c.commands if _placeholders(x) <= have))


def _placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


class _Defaulting(dict):
    def __init__(self, params: Mapping[str, str]):
        super().__init__({k: str(v) for k, v in params.items()})

    def __missing__(self, key: str) -> str:
        return f"<{key}>"


def load(directory: Path | None = None) -> Catalog:
    """The catalog from `directory`, or the packaged one (source tree in an editable install)."""
    base = directory or data_dir()
    checks_doc = _read(base / "checks.yaml")
    runbook_doc = _read(base / "runbooks.yaml")
    return replace(parse(checks_doc, runbook_doc), hops=parse_hops(_read(base / "hops.yaml")))


def data_dir() -> Path:
    """checks/: packaged as `netdoctor.checks` in the wheel, the source tree's in an editable install."""
    try:
        return Path(str(resources.files("netdoctor.checks")))
    except ModuleNotFoundError:  # editable install: the package-dir mapping isn't importable
        return Path(__file__).resolve().parent.parent / "checks"


def _read(path: Path) -> dict:
    try:
        doc = yaml.load(path.read_text(), Loader=_LOADER)
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError(f"check catalog {path}: cannot load ({exc})") from None
    if not isinstance(doc, dict):
        raise CatalogError(f"check catalog {path}: not a mapping")
    return doc


def parse(checks_doc: dict, runbook_doc: dict) -> Catalog:
    _keys(checks_doc, "checks.yaml", required={"version", "checks"})
    checks: dict[str, CheckDef] = {}
    for entry in checks_doc["checks"] or []:
        check = _check(entry)
        if check.id in checks:
            raise CatalogError(f"checks.yaml: duplicate check id {check.id}")
        checks[check.id] = check
    _keys(runbook_doc, "runbooks.yaml", required={"version", "layers", "root_causes"})
    layers = tuple(_layer(e) for e in runbook_doc["layers"] or [])
    if sorted(d.layer.value for d in layers) != sorted(x.value for x in Layer):
        raise CatalogError("runbooks.yaml: layers must list each layer exactly once")
    roots = tuple(_root_cause(entry, checks) for entry in runbook_doc["root_causes"] or [])
    return Catalog(checks, layers, roots)


def parse_hops(doc: dict) -> HopDef:
    _keys(doc, "hops.yaml", required={"version", "id", "title", "causes"})
    if not isinstance(doc["causes"], dict) or not doc["causes"]:
        raise CatalogError("hops.yaml: causes must be a non-empty mapping")
    causes = {key: _cause(key, body, f"hops.yaml cause {key}") for key, body in doc["causes"].items()}
    for key, cause in causes.items():
        if set(cause.params) - HOP_PARAMS:
            raise CatalogError(f"hops.yaml cause {key}: unknown params {', '.join(sorted(set(cause.params) - HOP_PARAMS))}")
    return HopDef(str(doc["id"]), str(doc["title"]), causes)


def _keys(entry, where: str, required: set[str], optional: frozenset[str] = frozenset()) -> None:
    if not isinstance(entry, dict):
        raise CatalogError(f"{where}: expected a mapping, got {entry!r}")
    missing = required - entry.keys()
    unknown = entry.keys() - required - optional
    if missing:
        raise CatalogError(f"{where}: missing {', '.join(sorted(missing))}")
    if unknown:
        raise CatalogError(f"{where}: unknown key {', '.join(sorted(unknown))}")


def _layer_of(value, where: str) -> Layer:
    try:
        return Layer(value)
    except ValueError:
        raise CatalogError(f"{where}: unknown layer {value!r}") from None


def _check(entry) -> CheckDef:
    where = f"checks.yaml: check {entry.get('id', '?') if isinstance(entry, dict) else entry!r}"
    _keys(entry, where, required={"id", "layer", "title", "causes"})
    if not isinstance(entry["causes"], dict) or not entry["causes"]:
        raise CatalogError(f"{where}: causes must be a non-empty mapping")
    causes = {key: _cause(key, body, f"{where} cause {key}") for key, body in entry["causes"].items()}
    return CheckDef(str(entry["id"]), _layer_of(entry["layer"], where), str(entry["title"]), causes)


def _cause(key: str, body, where: str) -> Cause:
    _keys(body, where, required={"summary", "remediation", "commands"}, optional=frozenset({"params"}))
    cause = Cause(key, str(body["summary"]), str(body["remediation"]),
                  tuple(str(c) for c in body["commands"] or ()), tuple(body.get("params") or ()))
    used = {name for text in (cause.summary, cause.remediation, *cause.commands)
            for _, name, _, _ in string.Formatter().parse(text) if name}
    unknown = used - COMMON_PARAMS - set(cause.params)
    if unknown:
        raise CatalogError(f"{where}: template uses undeclared {', '.join(sorted(unknown))}")
    return cause


def _layer(entry) -> LayerDef:
    where = f"runbooks.yaml: layer {entry.get('id', '?') if isinstance(entry, dict) else entry!r}"
    _keys(entry, where, required={"id", "title", "requires"})
    requires = tuple(_layer_of(x, where) for x in entry["requires"] or ())
    return LayerDef(_layer_of(entry["id"], where), str(entry["title"]), requires)


def _root_cause(entry, checks: Mapping[str, CheckDef]) -> RootCause:
    where = f"runbooks.yaml: root cause {entry.get('cause', '?') if isinstance(entry, dict) else entry!r}"
    _keys(entry, where, required={"cause", "explains"})
    check_id, _, cause = str(entry["cause"]).partition(":")
    if check_id not in checks or cause not in checks[check_id].causes:
        raise CatalogError(f"{where}: is no check's cause")
    explains = frozenset(str(x) for x in entry["explains"] or ())
    unknown = sorted(explains - checks.keys())
    if unknown:
        raise CatalogError(f"{where}: explains unknown checks {', '.join(unknown)}")
    if check_id in explains:
        raise CatalogError(f"{where}: a cause cannot explain its own check")
    return RootCause(check_id, cause, explains)
