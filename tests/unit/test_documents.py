"""`-o json` documents and their published JSON Schemas: `netdoctor schema NAME` prints them, they
are valid schemas that follow the code's vocabulary, every document the suite prints is checked
against them (tests/conftest.py), errors print one too, and every command answers --version."""

from __future__ import annotations

import json
import re
from io import StringIO
from pathlib import Path

import jsonschema
import pytest

from conftest import validate_document
from netdoctor import __version__, schemas
from netdoctor.cli import main
from netdoctor.environment import Environment
from netdoctor.model import Cni, Confidence, HopKind, Layer, Overlay, PathOutcome, ProxyMode, Reply, ServiceProxy, State
from netdoctor.observations import RefusalKind
from netdoctor.policy.engine import DirectionState
from netdoctor.policy.model import ProblemKind
from test_check_command import FakeKube, run
from test_report import BROKEN, output

ROOT = Path(__file__).resolve().parents[2]


def cli(*argv):
    env = Environment(stdout=StringIO(), stderr=StringIO(), environ={})
    code = main(list(argv), env)
    return code, env.stdout.getvalue(), env.stderr.getvalue()


@pytest.mark.parametrize("name", ["check", "matrix"])
def test_schema_command_prints_a_valid_json_schema(name):
    code, out, _ = cli("schema", name)
    assert code == 0
    jsonschema.Draft202012Validator.check_schema(json.loads(out))
    assert json.loads(out)["$id"] == f"urn:netdoctor:schema:{name}:v1"


def test_unknown_schema_is_a_usage_error_listing_the_known():
    code, _, err = cli("schema", "nope")
    assert code == 2 and "use one of check, matrix" in err


def _enum(schema: dict, *path: str) -> set:
    node = schema["$defs"]
    for key in path:
        node = node[key] if key in node else node["properties"][key]
    values = node.get("enum") or next(v["enum"] for v in node.get("anyOf", []) if "enum" in v)
    return set(values) - {None}


def test_the_check_schema_follows_the_code_vocabulary():
    schema = json.loads(schemas.schema_file("check").read_text())
    assert _enum(schema, "check", "state") == {s.value for s in State}
    assert _enum(schema, "layer", "id") == {layer.value for layer in Layer}
    assert _enum(schema, "path", "outcome") == {o.value for o in PathOutcome}
    assert _enum(schema, "hop", "kind") == {k.value for k in HopKind}
    assert _enum(schema, "hop", "reply") == {r.value for r in Reply}
    assert _enum(schema, "refusal", "kind") == {k.value for k in RefusalKind}
    assert _enum(schema, "cluster", "cni", "name") == {c.value for c in Cni}
    assert _enum(schema, "cluster", "cni", "overlay") == {o.value for o in Overlay}
    assert _enum(schema, "cluster", "cni", "confidence") == {c.value for c in Confidence}
    assert _enum(schema, "cluster", "proxy", "name") == {p.value for p in ServiceProxy}
    assert _enum(schema, "cluster", "proxy", "mode") == {m.value for m in ProxyMode}


def test_the_matrix_schema_follows_the_code_vocabulary():
    schema = json.loads(schemas.schema_file("matrix").read_text())
    assert _enum(schema, "cell", "egress") == {s.value for s in DirectionState}
    assert _enum(schema, "problem", "kind") == {k.value for k in ProblemKind}


def test_a_report_carries_the_version_and_validates():
    doc = validate_document(output("json"))
    assert doc["netdoctor_version"] == __version__ and list(doc)[:2] == ["schema", "netdoctor_version"]
    assert all("duration_s" in c for layer in doc["layers"] for c in layer["checks"])


def test_the_suite_hook_rejects_a_document_that_drifts_from_its_schema():
    from netdoctor.report.json import document

    drifted = {**document(BROKEN), "state": "broken"}
    with pytest.raises(jsonschema.ValidationError):
        schemas.dump(drifted)  # the autouse fixture validates every printed document
    del drifted["layers"]
    with pytest.raises(jsonschema.ValidationError):
        validate_document(json.dumps({**drifted, "state": "fail", "netdoctor_version": __version__}))


@pytest.mark.parametrize("argv, code", [
    (("check", "svc/web", "-n", "Bad_NS", "-o", "json"), 2),  # our own validation
    (("check", "svc/web", "--bogus", "--output=json"), 2),  # click's
    (("check", "svc/web", "-n", "demo", "--timeout", "0", "-ojson"), 2),
    (("check", "svc/missing", "-n", "demo", "-o", "json"), 3),  # the cluster's answer
])
def test_errors_print_a_json_document_with_the_error(argv, code):
    got, out, err = run(*argv)
    doc = validate_document(out)
    assert got == code and doc["state"] == "error" and doc["error"]["exit_code"] == code
    assert doc["error"]["message"] and err.startswith("error: ") and doc["error"]["message"] in err


def test_errors_print_no_json_without_o_json():
    code, out, err = run("check", "svc/missing", "-n", "demo")
    assert code == 3 and out == "" and err.startswith("error:")


def test_matrix_errors_print_a_matrix_document(tmp_path):
    code, out, _ = cli("policy", "matrix", "-f", str(tmp_path / "missing.yaml"), "-o", "json")
    doc = validate_document(out)
    assert code == 2 and doc["schema"] == "netdoctor.matrix/v1" and doc["error"]["exit_code"] == 2


@pytest.mark.parametrize("argv", [("--version",), ("check", "--version"), ("check", "svc/web", "--version"),
                                  ("policy", "matrix", "--version"), ("lab", "up", "--version"),
                                  ("schema", "--version"), ("completion", "--version")])
def test_every_command_answers_version(argv):
    code, out, _ = cli(*argv)
    assert (code, out) == (0, f"netdoctor {__version__}\n")


def test_the_package_version_is_the_module_version():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in text and 'version = {attr = "netdoctor.__version__"}' in text
    assert re.fullmatch(r"\d+\.\d+\.\d+", __version__)


def test_exit_4_prints_the_partial_report_with_the_error():
    from netdoctor.cluster.kube import Forbidden

    class ReadOnly(FakeKube):
        def create_config_map(self, namespace, body):
            raise Forbidden("forbidden", status=403, server_message='configmaps is forbidden: User "ro" cannot create')

        create_job = create_pod = create_config_map

        def exec(self, *args, **kwargs):
            raise Forbidden("forbidden", status=403, server_message='pods "web-1" is forbidden: exec')

    code, out, err = run("check", "svc/web", "-n", "demo", "-o", "json", "--capture", "off", kube=ReadOnly())
    doc = validate_document(out)
    assert code == 4 and doc["error"]["exit_code"] == 4 and doc["layers"] and doc["target"] == "svc/web"


def test_several_targets_make_one_checks_document_described_by_the_check_schema():
    from dataclasses import replace

    from netdoctor.report.many import to_json

    doc = validate_document(to_json((BROKEN, replace(BROKEN, target="svc/api", namespace="shop"))))
    assert doc["schema"] == "netdoctor.checks/v1" and len(doc["reports"]) == 2
    assert schemas.schema_file(doc["schema"]) == schemas.schema_file("check")
