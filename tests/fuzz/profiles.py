"""Hypothesis profiles for the fuzz suite, chosen with HYPOTHESIS_PROFILE (default "ci").

    ci    modest example counts: the whole fuzz suite runs in well under two minutes on 2 cores
    dev   a few times more
    long  a campaign: tens of thousands of examples per test (hours; run by hand)

Only the fuzz tests use these settings (they decorate themselves with `fuzz_settings(...)`), so
choosing a profile never changes the example counts of the other test modules.
"""

from __future__ import annotations

import os

from hypothesis import settings

_SCALE = {"ci": 1, "dev": 5, "long": 200}
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
if PROFILE not in _SCALE:
    PROFILE = "ci"

# No health check is suppressed: the strategies are built so that none fires (no filters, strategies
# made once, seeds chosen by index rather than drawn byte by byte), and too_slow is the warning
# that keeps this suite inside its CI time. deadline=None: a whole-pipeline example may take a
# second on a loaded machine, which is not a bug.
_BASE = dict(deadline=None, print_blob=True)
for _name, _scale in _SCALE.items():
    settings.register_profile(f"fuzz-{_name}", max_examples=100 * _scale, **_BASE)


def fuzz_settings(examples: int) -> settings:
    """Settings for one fuzz test: `examples` under the ci profile, scaled for dev/long."""
    return settings(settings.get_profile(f"fuzz-{PROFILE}"), max_examples=examples * _SCALE[PROFILE])
