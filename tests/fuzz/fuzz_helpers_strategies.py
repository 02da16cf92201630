"""Strategies of bad job ids and names (what `Queue.add` must refuse)."""

from __future__ import annotations

from typing import Any

from fuzz_helpers import NOT_STR, ODD_TEXT
from hypothesis import strategies as st

from jobqueue._encode import _JOB_ID_RE


def _valid_id(value: Any) -> bool:
    return isinstance(value, str) and bool(_JOB_ID_RE.match(value)) and not value.isdigit()


def _valid_name(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 200 and value.isprintable()


def bad_job_ids() -> st.SearchStrategy[Any]:
    """Ids `Queue.add` refuses: odd characters, too long, digits only, not a str."""
    return st.one_of(ODD_TEXT, NOT_STR, st.from_regex(r"\A[0-9]{1,12}\Z")).filter(
        lambda v: v is not None and not _valid_id(v)
    )


def bad_job_names() -> st.SearchStrategy[Any]:
    """Names `Queue.add` refuses: empty, unprintable, over 200 characters, not a str."""
    return st.one_of(ODD_TEXT, NOT_STR).filter(lambda v: not _valid_name(v))
