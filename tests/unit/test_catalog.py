import copy
import re
from pathlib import Path

import pytest
import yaml

from netdoctor import catalog
from netdoctor.judge.verdict import CHECK_IDS
from netdoctor.model import Layer

CHECKS_DIR = Path(__file__).resolve().parents[2] / "checks"
DOCS = yaml.safe_load((CHECKS_DIR / "checks.yaml").read_text()), yaml.safe_load((CHECKS_DIR / "runbooks.yaml").read_text())


def test_every_id_the_code_uses_is_in_the_catalog_and_vice_versa():
    loaded = catalog.load()
    used = {i for ids in CHECK_IDS.values() for i in ids}
    assert used == set(loaded.checks)
    for layer, ids in CHECK_IDS.items():
        assert all(loaded.check(i).layer is layer for i in ids)


def test_every_cause_the_judge_names_exists():
    loaded = catalog.load()
    source = "".join(p.read_text() for p in (Path(catalog.__file__).parent / "judge").glob("*.py"))
    for check_id, cause in re.findall(r'failed\(\s*"(ND-[A-Z]+-\d+)",\s*"([a-z-]+)"', source):
        assert cause in loaded.check(check_id).causes, (check_id, cause)


def test_layers_in_runbook_order():
    assert [d.layer for d in catalog.load().layers] == list(Layer)


@pytest.mark.parametrize("mutate,message", [
    (lambda c, r: c["checks"].append(copy.deepcopy(c["checks"][0])), "duplicate check id"),
    (lambda c, r: c["checks"][0].update(colour="red"), "unknown key colour"),
    (lambda c, r: c["checks"][0].pop("title"), "missing title"),
    (lambda c, r: r["root_causes"].append({"cause": "ND-XXX-001:nope", "explains": []}), "is no check's cause"),
    (lambda c, r: r["root_causes"].append({"cause": "ND-POD-001:timeout", "explains": ["ND-NOPE-9"]}),
     "explains unknown checks ND-NOPE-9"),
    (lambda c, r: r["root_causes"].append({"cause": "ND-POD-001:timeout", "explains": ["ND-POD-001"]}),
     "cannot explain its own check"),
    (lambda c, r: r["root_causes"].append("ND-POD-001:timeout"), "expected a mapping"),
    (lambda c, r: c["checks"][0]["causes"]["port-missing"].update(summary="{nosuch}"), "undeclared nosuch"),
])
def test_invalid_catalogs_are_clear_errors(mutate, message):
    checks, runbooks = copy.deepcopy(DOCS[0]), copy.deepcopy(DOCS[1])
    mutate(checks, runbooks)
    with pytest.raises(catalog.CatalogError, match=message):
        catalog.parse(checks, runbooks)


def test_every_hop_cause_the_hop_judge_names_is_in_hops_yaml_and_vice_versa():
    """The causes judge/hops.py returns (the string constants of its cause functions' returns and
    `replace(..., cause=...)`) are exactly checks/hops.yaml's, each with its params declared."""
    import ast

    source = (Path(catalog.__file__).parent / "judge" / "hops.py").read_text()
    named = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and ("cause" in node.name or node.name in (
                "_step_path", "_with_mtu", "_policy_denial")):
            for inner in ast.walk(node):
                values = inner.value if isinstance(inner, ast.Return) else (
                    inner.value if isinstance(inner, ast.keyword) and inner.arg == "cause" else None)
                if values is None:
                    continue
                keys = {id(k) for d in ast.walk(values) if isinstance(d, ast.Dict) for k in d.keys}
                named |= {c.value for c in ast.walk(values) if isinstance(c, ast.Constant) and id(c) not in keys
                          and isinstance(c.value, str) and re.fullmatch(r"[a-z]+(-[a-z]+)*", c.value)}
    hops = catalog.load().hops
    assert named == set(hops.causes), named ^ set(hops.causes)


@pytest.mark.parametrize("mutate,message", [
    (lambda h: h.pop("id"), "missing id"),
    (lambda h: h["causes"]["mtu"].update(summary="{nosuch}"), "undeclared nosuch"),
    (lambda h: h["causes"]["mtu"]["params"].append("colour"), "unknown params colour"),
])
def test_invalid_hop_catalog_is_a_clear_error(mutate, message):
    import yaml

    doc = yaml.safe_load((catalog.data_dir() / "hops.yaml").read_text())
    mutate(doc)
    with pytest.raises(catalog.CatalogError, match=message):
        catalog.parse_hops(doc)
