"""PATCH bodies: JSON merge patch, strategic merge patch (simplified) and JSON patch.

Used by the store's `patch()`. Pure functions over API-shaped dicts; a malformed patch raises
ApiError 422/400/415 like the real API server.
"""

from __future__ import annotations

import copy

from netdoctor.lab.api.status import ApiError

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
PATCH_TYPES = (MERGE, STRATEGIC, JSON_PATCH)

# Lists merged by the `name` of their items in a strategic merge patch; every other list is replaced.
_NAME_KEYED_LISTS = frozenset({"containers", "initContainers", "ephemeralContainers"})


def apply(obj: dict, patch, patch_type: str) -> dict:
    """A patched deep copy of obj."""
    if patch_type == MERGE:
        return _merge(copy.deepcopy(obj), _require_object(patch), strategic=False)
    if patch_type == STRATEGIC:
        return _merge(copy.deepcopy(obj), _require_object(patch), strategic=True)
    if patch_type == JSON_PATCH:
        return _json_patch(copy.deepcopy(obj), patch)
    raise ApiError(415, f"the body of the request was in an unknown format - accepted media types include: {', '.join(PATCH_TYPES)}")


def _require_object(patch) -> dict:
    if not isinstance(patch, dict):
        raise ApiError(400, "json: cannot unmarshal patch into Go value of type map[string]interface {}")
    return patch


def _merge(target, patch, strategic: bool):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if not isinstance(target, dict):
        target = {}
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif strategic and key in _NAME_KEYED_LISTS and isinstance(value, list):
            target[key] = _merge_named(target.get(key) or [], value)
        else:
            target[key] = _merge(target.get(key), value, strategic)
    return target


def _merge_named(current: list, patch: list) -> list:
    merged = [copy.deepcopy(item) for item in current]
    index = {item.get("name"): i for i, item in enumerate(merged) if isinstance(item, dict)}
    for item in patch:
        name = item.get("name") if isinstance(item, dict) else None
        if name in index and item.get("$patch") == "delete":
            merged[index[name]] = None
        elif name in index:
            merged[index[name]] = _merge(merged[index[name]], item, strategic=True)
        else:
            merged.append(_merge({}, item, strategic=True))
    return [item for item in merged if item is not None]


def _json_patch(doc: dict, operations) -> dict:
    if not isinstance(operations, list):
        raise ApiError(400, "json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    for op in operations:
        doc = _json_patch_op(doc, op)
    return doc


def _json_patch_op(doc, op: dict):
    kind, path = op.get("op"), op.get("path")
    if kind == "test":
        if _get(doc, _pointer(path)) != op.get("value"):
            raise ApiError(422, f"the server rejected our request due to an error in our request: testing value {path} failed", reason="Invalid")
        return doc
    if kind == "remove":
        return _remove(doc, _pointer(path))
    if kind in ("add", "replace"):
        if kind == "replace":
            _get(doc, _pointer(path))
        return _add(doc, _pointer(path), copy.deepcopy(op.get("value")), replace=kind == "replace")
    if kind in ("move", "copy"):
        value = copy.deepcopy(_get(doc, _pointer(op.get("from"))))
        if kind == "move":
            doc = _remove(doc, _pointer(op.get("from")))
        return _add(doc, _pointer(path), value, replace=False)
    raise ApiError(422, f"Unexpected kind: {kind}", reason="Invalid")


def _pointer(path) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise ApiError(422, f"invalid JSON pointer: {path!r}", reason="Invalid")
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]] if path else []


def _missing(parts: list[str]) -> ApiError:
    return ApiError(422, f"doc is missing path: \"/{'/'.join(parts)}\": missing value", reason="Invalid")


def _get(doc, parts: list[str]):
    node = doc
    for part in parts:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            raise _missing(parts)
    return node


def _add(doc, parts: list[str], value, replace: bool):
    if not parts:
        return value
    parent, last = _get(doc, parts[:-1]), parts[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list) and last == "-":
        parent.append(value)
    elif isinstance(parent, list) and last.isdigit() and int(last) <= len(parent) - replace:
        if replace:
            parent[int(last)] = value
        else:
            parent.insert(int(last), value)
    else:
        raise _missing(parts)
    return doc


def _remove(doc, parts: list[str]):
    if not parts:
        raise _missing(parts)
    parent, last = _get(doc, parts[:-1]), parts[-1]
    _get(doc, parts)
    if isinstance(parent, dict):
        del parent[last]
    else:
        del parent[int(last)]
    return doc
