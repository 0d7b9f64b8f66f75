"""Shared test set-up: both `from tests.x import …` and `from x import …` find the test helpers."""

from __future__ import annotations

import os
import sys

import matplotlib

matplotlib.use("Agg")

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)
