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


def _load_pipeline_fixtures() -> None:
    """The pipeline tests' fixtures (`runtime`, `make_runtime`...) here too: their conftest is
    loaded under a name of its own (every conftest module is called `conftest`)."""
    import importlib.util

    pipeline_tests = Path(__file__).parents[1] / "pipeline"
    sys.path.insert(0, str(pipeline_tests))  # its helpers (pipeline_helpers)
    spec = importlib.util.spec_from_file_location(
        "pipeline_fixtures", pipeline_tests / "conftest.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    globals().update({name: getattr(module, name) for name in ("make_runtime", "runtime", "pool")})


_load_pipeline_fixtures()
