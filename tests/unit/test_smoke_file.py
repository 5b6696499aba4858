"""The smoke file (issue 14 item 2): the shipped JSON Schema is valid and accepts the shipped
example; a bad file is refused with FILE:LINE and the field (exit 2) before the cluster is asked."""

from __future__ import annotations

from io import StringIO
from pathlib import Path

import json
import jsonschema
import pytest
import yaml

from netdoctor.check import smoke
from netdoctor.cli import main
from netdoctor.environment import Environment
from netdoctor.model import ExpectKind

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "shop-smoke.yaml"
HEAD = "apiVersion: netdoctor.io/v1\nkind: Smoke\n"


def run(*argv):
    def refuse(kubeconfig, context):
        raise AssertionError("the cluster was asked")

    env = Environment(stdout=StringIO(), stderr=StringIO(), environ={"NO_COLOR": "1"}, connect=refuse)
    return main(list(argv), env=env), env.stdout.getvalue(), env.stderr.getvalue()


def test_the_schema_is_a_valid_json_schema_and_the_example_follows_it():
    jsonschema.Draft202012Validator.check_schema(smoke.schema())
    jsonschema.validate(yaml.safe_load(EXAMPLE.read_text()), smoke.schema())


def test_smoke_schema_prints_it():
    code, out, _ = run("smoke", "--schema")
    assert code == 0 and json.loads(out) == smoke.schema()


def test_the_example_has_the_expectations_the_issue_asks_for():
    items = smoke.load(EXAMPLE).items
    kinds = [i.expectation.kind for i in items]
    assert len(items) >= 12 and kinds.count(ExpectKind.DENY) >= 5
    assert {ExpectKind.HEALTHY, ExpectKind.ALLOW, ExpectKind.DENY, ExpectKind.RESOLVE} <= set(kinds)


FLOW = "flows:\n  - from: {workload: deploy/frontend}\n    to: {service: api}\n    port: http\n    expect: %s\n"


@pytest.mark.parametrize("body, where", [
    (FLOW % "maybe", ":7: flows[0].expect: must be allow or deny"),
    (FLOW.replace("{workload: deploy/frontend}", "{workload: deploy/frontend, selector: a=b}") % "deny",
     ":4: flows[0].from: give exactly one of workload, selector, namespace"),
    (FLOW.replace("port: http", "port: TCP/99999") % "deny", ":6: flows[0].port: "),
    (FLOW.replace("{service: api}", "{cidr: 10.0.0.0/33}") % "deny", ":5: flows[0].to.cidr: "),
    (FLOW.replace("{service: api}", "{selector: 'a in (b'}") % "deny", ":5: flows[0].to.selector: "),
    (FLOW.replace("{service: api}", "{service: api, namespace: shop}") % "deny", ":5: flows[0].to.namespace: "),
    (FLOW.replace("deploy/frontend", "rs/frontend") % "deny", ":4: flows[0].from.workload: "),
    ("services:\n  - service: api\n    prot: 80\n", ":5: services[0].prot: unknown field"),
    ("services:\n  - from: deploy/x\n", ":4: services[0]: missing 'service'"),
    ("names:\n  - name: 'bad name'\n", ":4: names[0].name: "),
    ("", ":1: give at least one of services, flows, names"),
    ("flows: [\n", ":4: not valid YAML"),
])
def test_a_bad_file_names_the_line_and_the_field(tmp_path, body, where):
    path = tmp_path / "smoke.yaml"
    path.write_text(HEAD + body)
    code, out, err = run("smoke", "-f", str(path))
    assert code == 2 and not out
    assert err.startswith(f"error: {path}{where}"), err
    assert err.count("\n") <= 2


def test_a_missing_file_or_no_file_is_a_usage_error(tmp_path):
    assert run("smoke", "-f", str(tmp_path / "none.yaml"))[0] == 2
    code, _, err = run("smoke")
    assert code == 2 and "missing -f FILE" in err


def test_a_cidr_is_tried_on_its_only_or_first_address():
    assert smoke.cidr_address("203.0.113.7/32") == "203.0.113.7"
    assert smoke.cidr_address("10.244.2.0/24") == "10.244.2.1"


def test_a_name_the_cluster_does_not_have_is_exit_3_before_anything_is_created(tmp_path):
    from test_check_command import FakeKube

    path = tmp_path / "smoke.yaml"
    path.write_text(HEAD + "namespace: demo\nservices:\n  - service: web\n  - service: nope\n")
    env = Environment(stdout=StringIO(), stderr=StringIO(), environ={"NO_COLOR": "1"},
                      connect=lambda kubeconfig, context: FakeKube())  # it cannot create anything
    code = main(["smoke", "-f", str(path), "-o", "json"], env=env)
    assert code == 3 and "service 'nope' not found in namespace 'demo'" in env.stderr.getvalue()
    assert json.loads(env.stdout.getvalue())["error"]["exit_code"] == 3  # the error document, per its schema
