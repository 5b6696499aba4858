import copy
import re
from pathlib import Path

import pytest
import yaml

from netdoctor import catalog
from netdoctor.judge import CHECK_IDS
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
    (lambda c, r: r["root_causes"].append("ND-XXX-001:nope"), "is no check's cause"),
    (lambda c, r: c["checks"][0]["causes"]["port-missing"].update(summary="{nosuch}"), "undeclared nosuch"),
])
def test_invalid_catalogs_are_clear_errors(mutate, message):
    checks, runbooks = copy.deepcopy(DOCS[0]), copy.deepcopy(DOCS[1])
    mutate(checks, runbooks)
    with pytest.raises(catalog.CatalogError, match=message):
        catalog.parse(checks, runbooks)
