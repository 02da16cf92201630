"""The fuzz tier: bad input tried on purpose against every public entry (see fuzz_helpers).

Hypothesis runs a modest number of examples per test (profile `fuzz`; `JQ_FUZZ_EXAMPLES`
changes it) without a deadline: no test here decides on speed.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).parent))

settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("JQ_FUZZ_EXAMPLES", "50")),
    deadline=None,
    derandomize=True,  # the same examples on every run: a failure reproduces
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("fuzz")
