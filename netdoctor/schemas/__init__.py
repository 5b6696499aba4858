"""The JSON documents netdoctor prints, and the JSON Schemas that describe them.

Every `-o json` output (check, policy matrix, smoke) goes through `dump()`, which stamps
netdoctor's version; `cli.main()` builds the error document of a command that ended with an
exit code of 2 to 5 or 130. Each document names its schema (`netdoctor.check/v1`); the schema
file `check.schema.json` beside this module describes it and `netdoctor schema check` prints it. A new kind
of document ships its `NAME.schema.json` here and is listed by itself.
"""

from __future__ import annotations

import json
from pathlib import Path

from netdoctor import __version__

SCHEMAS = Path(__file__).resolve().parent
SUFFIX = ".schema.json"


def dump(document: dict) -> str:
    """The document as printed: `schema` first, then `netdoctor_version`, indented, one newline."""
    return json.dumps({"schema": document["schema"], "netdoctor_version": __version__, **document}, indent=2) + "\n"


def error_document(schema: str, exit_code: int, message: str, hint: str | None, partial: dict | None = None) -> dict:
    """What `-o json` prints when a command ends in error: what it could still tell (`partial`,
    such as the layers a check judged before its probes were refused), and the error."""
    base = partial if partial is not None else {"schema": schema, "state": "error"}
    return {**base, "error": {"exit_code": int(exit_code), "message": message, "hint": hint}}


def schema_names() -> tuple[str, ...]:
    """The documents with a published schema: `check`, `matrix`, …"""
    return tuple(sorted(p.name[: -len(SUFFIX)] for p in SCHEMAS.glob(f"*{SUFFIX}")))


# Documents described in another's schema file: the reports of many targets with the single one's.
SHARED = {"checks": "check"}


def schema_file(name: str) -> Path:
    """The schema file of `name` (`check`) or of a document's schema field (`netdoctor.check/v1`)."""
    if name.startswith("netdoctor."):
        name = name.split(".", 1)[1].split("/", 1)[0]
    return SCHEMAS / f"{SHARED.get(name, name)}{SUFFIX}"
