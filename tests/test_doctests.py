"""Every docstring example in kb/, advisor/ and bench/ runs and holds."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import advisor
import bench
import kb


def _modules() -> list[str]:
    names = []
    for pkg in (kb, advisor, bench):
        names.append(pkg.__name__)
        for info in pkgutil.walk_packages(pkg.__path__, prefix=f"{pkg.__name__}."):
            names.append(info.name)
    return names


@pytest.mark.parametrize("name", _modules())
def test_doc_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed"
