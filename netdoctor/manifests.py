"""Reading Kubernetes manifests from files: multi-document YAML, `List` objects, directories.

Used by `netdoctor lab apply` and `netdoctor policy … -f`. Returns plain API-shaped dicts; the
caller turns them into its own types. A file that can't be read or parsed is an InputFileError.
YAML is parsed by libyaml's C loader where PyYAML was built with it (ten times the pure-Python
loader's speed on a big `kubectl get -A -o yaml` dump).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import yaml

from netdoctor.errors import InputFileError

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_paths(paths: Iterable[str | Path]) -> list[dict]:
    """Every object in these files and directories (recursively, *.yaml/*.yml/*.json), in order."""
    objects: list[dict] = []
    for path in map(Path, paths):
        for file in _files(path):
            objects.extend(load_text(_read(file), str(file)))
    return objects


def load_text(text: str, origin: str = "<input>") -> list[dict]:
    try:
        documents = list(yaml.load_all(text, Loader=_LOADER))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise InputFileError(f"{origin}:{where} is not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return list(_flatten(documents, origin))


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
        return sorted(p for p in path.rglob("*") if p.suffix in MANIFEST_SUFFIXES and p.is_file())
    if not path.exists():
        raise InputFileError(f"{path}: no such file or directory")
    return [path]


def _read(file: Path) -> str:
    try:
        return file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{file}: cannot read ({exc.strerror or exc})") from None
