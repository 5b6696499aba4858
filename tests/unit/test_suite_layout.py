"""The README's test command collects the whole suite in one run.

pytest imports test modules by basename (rootdir import mode, no `__init__.py`): two test files
with one name in tests/unit and tests/lab collect fine one folder at a time and break
`python3 -m pytest -q` as a whole. This test fails in the unit run already.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_module_name_is_unique_across_folders():
    names = Counter(path.name for path in TESTS.rglob("*.py") if path.name != "conftest.py")
    assert [name for name, count in names.items() if count > 1] == []
