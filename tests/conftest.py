"""Shared fixtures: lab tests need root and network namespaces; off CI they skip without them.
Every JSON document netdoctor prints in a test (unit or lab, in-process) is validated against its
published JSON Schema (netdoctor/schemas/), so a report that drifts from its schema fails the test
that produced it."""

import functools
import json
import os
import shutil

import pytest


def lab_capable() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None and shutil.which("nft") is not None


def pytest_collection_modifyitems(config, items):
    if lab_capable() or os.environ.get("CI"):
        return  # on CI a lab test that can't run must fail, not skip
    skip = pytest.mark.skip(reason="needs root, iproute2 and nftables")
    for item in items:
        if "lab" in item.keywords:
            item.add_marker(skip)


@functools.lru_cache(maxsize=None)
def schema_validator(schema: str):
    """The JSON Schema validator of a document's `schema` field (`netdoctor.check/v1`)."""
    import jsonschema

    from netdoctor import schemas

    published = json.loads(schemas.schema_file(schema).read_text())
    return jsonschema.Draft202012Validator(published, format_checker=jsonschema.FormatChecker())


def validate_document(text: str) -> dict:
    """A printed document, parsed and checked against its schema (raises ValidationError)."""
    document = json.loads(text)
    schema_validator(document["schema"]).validate(document)
    return document


@pytest.fixture(autouse=True)
def documents_match_their_schemas(monkeypatch):
    from netdoctor import schemas

    dump = schemas.dump

    def validated(document: dict) -> str:
        text = dump(document)
        validate_document(text)
        return text

    monkeypatch.setattr(schemas, "dump", validated)
