"""Reading Kubernetes manifests from files: multi-document YAML, `List` objects, directories.

Used by `netdoctor lab apply` and `netdoctor policy … -f`. Returns plain API-shaped dicts; the
caller turns them into its own types. A file that can't be read or parsed is an InputFileError.
YAML is parsed by libyaml's C parser where PyYAML was built with it, and the documents are built
straight from its events with each plain scalar resolved once (`_build`): PyYAML's own constructor
spends ten times as long on a big `kubectl get -A -o yaml` dump. Anything unusual (explicit tags,
merge keys, complex keys) goes through PyYAML's safe constructor instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator

import yaml
from yaml.events import (
    AliasEvent, DocumentEndEvent, DocumentStartEvent, MappingEndEvent, MappingStartEvent, ScalarEvent,
    SequenceEndEvent, SequenceStartEvent, StreamEndEvent, StreamStartEvent,
)

from netdoctor.errors import InputFileError

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR = "tag:yaml.org,2002:str"
_MERGE = "tag:yaml.org,2002:merge"
_PLAIN = (True, False)  # ScalarEvent.implicit of an unquoted scalar, as the resolver takes it


class _Unusual(Exception):
    """The text uses YAML the event builder leaves to PyYAML's constructor."""


def load_paths(paths: Iterable[str | Path]) -> list[dict]:
    """Every object in these files and directories (recursively, *.yaml/*.yml/*.json), in order."""
    objects: list[dict] = []
    for path in map(Path, paths):
        for file in _files(path):
            objects.extend(load_text(_read(file), str(file)))
    return objects


def load_text(text: str, origin: str = "<input>") -> list[dict]:
    try:
        try:
            documents = _build(text)
        except _Unusual:
            documents = list(yaml.load_all(text, Loader=_LOADER))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise InputFileError(f"{origin}:{where} is not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return list(_flatten(documents, origin))


def _build(text: str) -> list[Any]:
    """The documents of `text`, as yaml.safe_load_all gives them, built from the parser's events."""
    loader = _LOADER(text)
    scalars = _Scalars(loader)
    documents: list[Any] = []
    stack: list[list] = []  # [container, pending mapping key (a 1-tuple) or None, anchor]
    anchors: dict[str, Any] = {}
    try:
        while True:
            event = loader.get_event()
            kind = type(event)
            if kind is ScalarEvent:
                value = scalars.value(event)
                if event.anchor:
                    anchors[event.anchor] = value
            elif kind is MappingStartEvent or kind is SequenceStartEvent:
                if event.tag is not None and not event.implicit:
                    raise _Unusual
                stack.append([{} if kind is MappingStartEvent else [], None, event.anchor])
                continue
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                value, _, anchor = stack.pop()
                if anchor:
                    anchors[anchor] = value
            elif kind is AliasEvent:
                value = anchors[event.anchor]
            elif kind is StreamEndEvent:
                return documents
            elif kind in (StreamStartEvent, DocumentStartEvent, DocumentEndEvent):
                continue
            else:
                raise _Unusual
            _place(stack, documents, value)
    except KeyError:  # an alias to an unknown anchor: PyYAML's error says where
        raise _Unusual from None
    finally:
        loader.dispose()


def _place(stack: list[list], documents: list[Any], value: Any) -> None:
    if not stack:
        documents.append(value)
        return
    top = stack[-1]
    container = top[0]
    if type(container) is list:
        container.append(value)
    elif top[1] is None:
        if isinstance(value, (dict, list)):
            raise _Unusual  # a complex key
        top[1] = (value,)
    else:
        container[top[1][0]] = value
        top[1] = None


class _Scalars:
    """Scalar values: quoted ones are strings, plain ones resolved (and constructed) once each."""

    def __init__(self, loader):
        self._loader = loader
        self._constructor = yaml.constructor.SafeConstructor()
        self._plain: dict[str, Any] = {}

    def value(self, event: ScalarEvent) -> Any:
        if event.tag is not None and event.tag != "!" and not any(event.implicit):
            raise _Unusual  # an explicit tag
        if not event.implicit[0]:
            return event.value
        found = self._plain.get(event.value, self)
        if found is self:
            tag = self._loader.resolve(yaml.ScalarNode, event.value, _PLAIN)
            if tag == _MERGE:
                raise _Unusual  # a merge key (<<) to expand
            found = event.value if tag == _STR else self._constructor.construct_object(yaml.ScalarNode(tag, event.value))
            self._plain[event.value] = found
        return found


def _flatten(documents: Iterable, origin: str) -> Iterator[dict]:
    for doc in documents:
        if doc is None:
            continue
        if not isinstance(doc, dict) or "kind" not in doc:
            raise InputFileError(f"{origin}: a document is not a Kubernetes object (no 'kind')")
        if doc["kind"] == "List" or str(doc["kind"]).endswith("List") and "items" in doc:
            yield from _flatten(doc.get("items") or [], origin)
        else:
            yield doc


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.suffix in MANIFEST_SUFFIXES and p.is_file())
        if not found:
            raise InputFileError(f"{path}: no manifests in this directory (*.yaml, *.yml, *.json)")
        return found
    if not path.exists():
        raise InputFileError(f"{path}: no such file or directory")
    return [path]


def _read(file: Path) -> str:
    try:
        return file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{file}: cannot read ({exc.strerror or exc})") from None
