"""Shared test set-up: both `from tests.x import …` and `from x import …` find the test helpers."""

from __future__ import annotations

import os
import sys

import matplotlib

matplotlib.use("Agg")

# A bug of ours inside a stage raises instead of becoming an internal-error row (analyzer.connection):
# every test that meets one fails with its traceback. Worker processes inherit the variable.
os.environ["WS_ANALYZER_STRICT"] = "1"

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)
