"""Error classification, exponential backoff and an in-process retry helper.

    types.py     the error types: built-in `ErrorType`s and the application's registered ones
    rules.py     the application's rules (`register_error_rule`), fixed or computed
    classify.py  the engine's generic classification (`classify_error`, `retry_after_seconds`)
    backoff.py   `backoff_delay`: the engine's one formula (`jobqueue.core.backoff`) for a job
    helper.py    `with_retry`

The engine knows no SDK: an application registers its SDK's exceptions with
`register_error_rule(..., classify=fn)` and its own types with `register_error_type`.
"""

from .backoff import backoff_delay
from .classify import Classification, RetryDelays, classify_error, retry_after_seconds
from .helper import with_retry
from .rules import (
    ErrorClassifier,
    ErrorMatch,
    ErrorVerdict,
    register_error_rule,
    unregister_error_rule,
)
from .types import (
    DEFAULT_RETRY_DELAYS,
    ErrorTypeInfo,
    check_error_type,
    default_retry_delays,
    error_type_info,
    error_types,
    register_error_type,
    unregister_error_type,
)

__all__ = [
    "DEFAULT_RETRY_DELAYS",
    "Classification",
    "ErrorClassifier",
    "ErrorMatch",
    "ErrorTypeInfo",
    "ErrorVerdict",
    "RetryDelays",
    "backoff_delay",
    "check_error_type",
    "classify_error",
    "default_retry_delays",
    "error_type_info",
    "error_types",
    "register_error_rule",
    "register_error_type",
    "retry_after_seconds",
    "unregister_error_rule",
    "unregister_error_type",
    "with_retry",
]
