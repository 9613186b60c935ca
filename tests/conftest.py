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
    # A test's helper thread that dies of an exception fails the test: by
    # itself pytest only warns, and the thread's checks are lost unseen.
    config.addinivalue_line("filterwarnings",
                            "error::pytest.PytestUnhandledThreadExceptionWarning")
    config.addinivalue_line("markers", "plain_build: tests something that does not "
                            "run the build under test (the Debian package builds "
                            "its own); only in the plain build's run")


def pytest_collection_modifyitems(config, items):
    valgrind = os.environ.get("POLICYD_VALGRIND") == "1"
    other_build = valgrind or os.path.basename(
        os.environ.get("POLICYD_BUILD", "build").rstrip("/")) != "build"
    skip_timing = pytest.mark.skip(reason="wall-clock bounds mean nothing under valgrind")
    skip_plain = pytest.mark.skip(reason="would only repeat the plain build's run")
    for item in items:
        if valgrind and "timing" in item.keywords:
            item.add_marker(skip_timing)
        if other_build and "plain_build" in item.keywords:
            item.add_marker(skip_plain)
