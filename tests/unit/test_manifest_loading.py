"""netdoctor.manifests builds documents from libyaml's events: the same objects as PyYAML's safe
loader, and PyYAML's own constructor for what the builder leaves to it."""

from __future__ import annotations

import pytest
import yaml

from netdoctor import manifests
from netdoctor.errors import InputFileError

SAME = [
    "kind: Pod\nmetadata: {name: a, labels: {app: web, 'on': 'yes'}}\nspec: {containers: [{ports: [{containerPort: 80}]}]}",
    "a: 1\nb: [1, 2.5, yes, no, ~, null, '', 0x1f, 1e3, .inf, 2020-01-01, 2020-01-01T10:00:00Z, '080', 080]",
    "---\n- &x {k: v}\n- *x\n- &s scalar\n- *s\n---\nplain: |\n  block\n  text\nfolded: >\n  a\n  b\n",
    "a: 1\na: 2",
    '"<<": 1\n"quoted: yes": "true"\nempty:\nlist: []\nmap: {}',
    "",
    "---\n---\n",
    "kind: List\nitems:\n- kind: Pod\n  metadata:\n    name: a\n- {kind: Service, metadata: {name: b}}",
]
UNUSUAL = [
    "a: !!str 1\nb: !!int '2'",
    "base: &b {x: 1}\nc:\n  <<: *b\n  y: 2",
    "!!map {a: 1}",
]


@pytest.mark.parametrize("text", SAME + UNUSUAL)
def test_documents_are_those_of_the_safe_loader(text):
    expected = list(yaml.load_all(text, Loader=yaml.SafeLoader))
    try:
        found = manifests._build(text)
    except manifests._Unusual:
        assert text in UNUSUAL
        found = list(yaml.load_all(text, Loader=manifests._LOADER))
    else:
        assert text in SAME
    assert found == expected


def test_the_builder_keeps_shared_anchors_shared():
    first, second = manifests._build("- &x {k: v}\n- *x")[0]
    assert first is second


@pytest.mark.parametrize("text, where", [("kind: Pod\nmetadata: {name: a\n", "line"), ("a: *nope", "line"),
                                         ("? [a, b]\n: 1", "line")])
def test_bad_yaml_is_one_clear_error(text, where):
    with pytest.raises(InputFileError, match=rf"f.yaml:( {where} \d+)? is not valid YAML"):
        manifests.load_text(text, "f.yaml")


def test_unusual_yaml_still_loads():
    objects = manifests.load_text("kind: Pod\nbase: &b {x: 1}\nmetadata:\n  <<: *b\n  name: a\n")
    assert objects == [{"kind": "Pod", "base": {"x": 1}, "metadata": {"x": 1, "name": "a"}}]
