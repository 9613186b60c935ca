# Shared pytest set-up: make tests/pylib importable, and the `timing` mark.
#
# A test marked timing asserts on wall-clock bounds (tarpit delays, time-outs
# within a tolerance).  Under valgrind (POLICYD_VALGRIND=1) the daemon runs
# 20-50 times slower, so those bounds say nothing; that run is about memory
# errors and skips them.  Every other run, sanitizer builds included, runs
# them.
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))


def pytest_configure(config):
    config.addinivalue_line("markers", "timing: asserts wall-clock bounds; "
                            "skipped under valgrind")


def pytest_collection_modifyitems(config, items):
    if os.environ.get("POLICYD_VALGRIND") != "1":
        return
    skip = pytest.mark.skip(reason="wall-clock bounds mean nothing under valgrind")
    for item in items:
        if "timing" in item.keywords:
            item.add_marker(skip)
