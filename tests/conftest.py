"""Shared fixtures: lab tests need root and network namespaces; off CI they skip without them."""

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
