# Shared pytest set-up: make tests/pylib importable.
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "pylib"))
