"""Generic, seeded generation of valid pydantic instances (offline model).

`generate_instance` walks a model's fields (str, int, float, bool, Decimal, dates, UUIDs,
lists/sets/tuples/dicts, nested models, `Literal`, enums, optionals and unions), honours the
`ge/gt/le/lt/multiple_of/min_length/max_length` constraints, and picks field-name-aware values
(a `ticker` field gets a ticker from the prompt or from the sector it names, a `rationale`
field gets analyst sentences, a `sub_sector` field the company's sub-sector). The offline
model's prose is `pipeline.ai.prose`.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import random
import re
import types
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

import pipeline.ai.wordbank as wb
from pipeline.ai.universe import universe

__all__ = ["GenerationError", "generate_instance"]

T = TypeVar("T", bound=BaseModel)

_CONSTRAINTS = ("ge", "gt", "le", "lt", "multiple_of", "min_length", "max_length", "pattern")
_SHALLOW_DEPTH = 4  # from here on, lists get their minimum length and optionals None
_PROSE_HINTS = (
    "summary", "thesis", "rationale", "reason", "explanation", "analysis", "description",
    "text", "comment", "note", "insight", "body", "content", "narrative", "detail", "feedback",
    "outlook", "overview", "justification",
)  # fmt: skip
_VERDICTS = ("buy", "hold", "sell", "overweight", "neutral", "underweight")


class GenerationError(ValueError):
    """The generic generator could not build a valid instance; register a fixture instead."""


class _Ctx:
    """Generation state: the rng, what the prompt mentions, and the current model's subject."""

    def __init__(self, rng: random.Random, prompt: str) -> None:
        self.rng = rng
        self.prompt_tickers = wb.tickers_in(prompt)
        self.sectors = [s.name for s in universe().sectors_in(prompt)]
        self.subject: str | None = None
        self._queue: list[str] = []

    def next_ticker(self) -> str:
        """A fresh ticker: the prompt's, else the prompt sector's, without repeats per round."""
        if not self._queue:
            pool = self.prompt_tickers or [
                c[0] for c in wb.COMPANIES if not self.sectors or c[2] in self.sectors
            ]
            self._queue = list(pool or [c[0] for c in wb.COMPANIES])
            self.rng.shuffle(self._queue)
        return self._queue.pop()

    def ticker(self) -> str:
        """The ticker the model being generated is about."""
        if self.subject is None:
            self.subject = self.next_ticker()
        return self.subject


def _constraints(metadata: Sequence[Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in metadata:
        if isinstance(item, FieldInfo):
            found.update(_constraints(item.metadata))
            continue
        for name in _CONSTRAINTS:
            value = getattr(item, name, None)
            if value is not None:
                found[name] = value
    return found


def _unwrap(tp: Any, cons: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    while get_origin(tp) is Annotated:
        base, *meta = get_args(tp)
        cons = {**cons, **_constraints(meta)}
        tp = base
    return tp, cons


def _bounds(cons: dict[str, Any], lo: float, hi: float, step: float) -> tuple[float, float]:
    if "ge" in cons:
        lo = float(cons["ge"])
    if "gt" in cons:
        lo = float(cons["gt"]) + step
    if "le" in cons:
        hi = float(cons["le"])
    if "lt" in cons:
        hi = float(cons["lt"]) - step
    if lo > hi:  # only one side was constrained, outside our default range
        if "ge" in cons or "gt" in cons:
            hi = lo + max(abs(lo), 10.0)
        else:
            lo = hi - max(abs(hi), 10.0)
    return lo, hi


_Ranges = tuple[tuple[tuple[str, ...], tuple[float, float]], ...]
_INT_RANGES: _Ranges = (
    (("rank", "position", "order"), (1, 10)),
    (("score", "rating", "conviction"), (1, 10)),
    (("year",), (2024, 2030)),
    (("count", "num", "quantity", "attempt"), (1, 12)),
    (("horizon", "month"), (3, 24)),
    (("shares", "volume"), (100_000, 50_000_000)),
)
_FLOAT_RANGES: _Ranges = (
    (("confidence", "probability", "weight", "likelihood"), (0.0, 1.0)),
    (("price", "target", "value", "cost"), (15.0, 650.0)),
    (("pct", "percent", "growth", "return", "upside", "margin", "change", "yield"), (-15, 45)),
    (("pe", "multiple", "ratio"), (5.0, 60.0)),
    (("cap", "revenue", "sales"), (1e9, 2.5e12)),
    (("score", "rating"), (1.0, 10.0)),
)


def _number_range(name: str, integer: bool) -> tuple[float, float]:
    n = name.lower()
    words = n.split("_")
    for keys, span in _INT_RANGES if integer else _FLOAT_RANGES:
        # short keys ("pe", "num", "cap") must be a whole word of the name
        if any(k in n if len(k) > 3 else k in words for k in keys):
            return span
    return (0, 100)


def _gen_number(name: str, cons: dict[str, Any], ctx: _Ctx, integer: bool) -> float | int:
    lo, hi = _bounds(cons, *_number_range(name, integer), step=1 if integer else 1e-6)
    if integer:
        lo_i, hi_i = math.ceil(lo), math.floor(hi)
        mult = int(cons.get("multiple_of") or 1)
        first, last = math.ceil(lo_i / mult), math.floor(hi_i / mult)
        return mult * ctx.rng.randint(first, max(first, last))
    value = ctx.rng.uniform(lo, hi)
    value = round(value, 2) if hi - lo > 0.1 else value
    step = cons.get("multiple_of")
    if step:
        value = round(value / float(step)) * float(step)
    return min(max(value, lo), hi)


def _fit_length(text: str, cons: dict[str, Any], ctx: _Ctx) -> str:
    lo, hi = int(cons.get("min_length", 0)), cons.get("max_length")
    while len(text) < lo:
        text = f"{text} {wb.sentence(ctx.rng, wb.company_for(ctx.ticker())[0])}".strip()
    if hi is not None and len(text) > int(hi):
        kept = ""
        for part in re.split(r"(?<=[a-z)]\.)\s+", text):
            if len(f"{kept} {part}".strip()) > int(hi):
                break
            kept = f"{kept} {part}".strip()
        text = kept if len(kept) >= max(lo, 1) else text[: int(hi)]
    return text


def _gen_str(name: str, cons: dict[str, Any], ctx: _Ctx, item: bool) -> str:
    n = name.lower()
    rng = ctx.rng
    # Items of a list of tickers/companies each get a fresh one; other fields are about the
    # subject of the model being generated.
    identity = n == "name" or any(k in n for k in ("ticker", "symbol", "company", "issuer"))
    ticker = ctx.next_ticker() if item and identity else ctx.ticker()
    company, sector = wb.company_for(ticker)
    if "ticker" in n or "symbol" in n:
        text = ticker
    elif any(k in n for k in ("sub_sector", "subsector", "industry")):
        listing = universe().listing(ticker)
        text = listing.sub_sector.name if listing is not None else sector
    elif "sector" in n:
        text = ctx.sectors[0] if ctx.sectors else sector
    elif "company" in n or n in ("name", "issuer", "company_name"):
        text = company
    elif "url" in n or "link" in n or "source" in n:
        text = f"https://example.com/research/{ticker.lower()}/{rng.randrange(1000, 9999)}"
    elif "date" in n:
        text = (dt.date(2026, 1, 1) + dt.timedelta(days=rng.randrange(365))).isoformat()
    elif n == "id" or n.endswith("_id"):
        text = f"{rng.getrandbits(64):016x}"
    elif "currency" in n:
        text = "USD"
    elif any(k in n for k in ("recommendation", "verdict", "action", "stance", "signal")):
        text = rng.choice(_VERDICTS)
    elif "title" in n or "headline" in n:
        text = f"{company}: {wb.phrase(rng)}".capitalize()
    elif "risk" in n:
        text = rng.choice(wb.RISKS).capitalize()
    elif "catalyst" in n or "driver" in n:
        text = rng.choice(wb.CATALYSTS).capitalize()
    elif any(k in n for k in _PROSE_HINTS):
        text = " ".join(wb.sentence(rng, company) for _ in range(rng.randint(2, 3)))
    else:
        text = wb.phrase(rng).capitalize()
    pattern = cons.get("pattern")
    if pattern and not re.fullmatch(pattern, text):
        bank = [c[0] for c in wb.COMPANIES]
        rng.shuffle(bank)
        numbers = [str(rng.randrange(10**k)) for k in range(1, 8)]
        candidates = [ticker, *ctx.prompt_tickers, *bank, *numbers, company, sector]
        for candidate in candidates + [c.lower() for c in candidates]:
            if re.fullmatch(pattern, candidate):
                return candidate
    return _fit_length(text, cons, ctx)


def _count(cons: dict[str, Any], ctx: _Ctx, depth: int) -> int:
    lo = int(cons.get("min_length", 0))
    hi = int(cons["max_length"]) if cons.get("max_length") is not None else max(lo, 4)
    if depth >= _SHALLOW_DEPTH:  # keep deep (e.g. recursive) structures small
        return lo
    first = min(max(lo, 2), hi)
    return ctx.rng.randint(first, max(first, min(hi, max(lo, 4))))


def _gen(
    tp: Any, name: str, cons: dict[str, Any], ctx: _Ctx, depth: int, item: bool = False
) -> Any:
    if depth > 40:
        raise GenerationError(f"{name!r} nests too deeply (a required recursive field?)")
    tp, cons = _unwrap(tp, cons)
    origin, args = get_origin(tp), get_args(tp)
    if tp is type(None):
        return None
    if origin in (Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        if not options or (len(options) < len(args) and depth >= _SHALLOW_DEPTH):
            return None
        return _gen(ctx.rng.choice(options), name, cons, ctx, depth, item)
    if origin is Literal:
        return ctx.rng.choice(args)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return ctx.rng.choice(list(tp))
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return _gen_model(tp, ctx, depth + 1)
    if origin in (list, set, frozenset, Sequence) or tp in (list, set, frozenset):
        singular = name[:-1] if name.endswith("s") else name
        count = _count(cons, ctx, depth)
        return [
            _gen(args[0] if args else str, singular, {}, ctx, depth + 1, True) for _ in range(count)
        ]
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            count = _count(cons, ctx, depth)
            return [_gen(args[0], name, {}, ctx, depth + 1, True) for _ in range(count)]
        return [_gen(a, name, {}, ctx, depth + 1, True) for a in args]
    if origin in (dict, Mapping) or tp is dict:
        key_t, val_t = args if len(args) == 2 else (str, str)
        count = _count(cons, ctx, depth)
        keys = dict.fromkeys(_gen(key_t, "ticker", {}, ctx, depth + 1, True) for _ in range(count))
        return {k: _gen(val_t, name, {}, ctx, depth + 1, True) for k in keys}
    if tp is bool:
        return ctx.rng.random() < 0.5
    if tp is int:
        return _gen_number(name, cons, ctx, integer=True)
    if tp is float:
        return _gen_number(name, cons, ctx, integer=False)
    if tp is Decimal:
        return Decimal(str(round(_gen_number(name, cons, ctx, integer=False), 2)))
    if tp is dt.datetime:
        return dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(
            minutes=ctx.rng.randrange(525600)
        )
    if tp is dt.date:
        return dt.date(2026, 1, 1) + dt.timedelta(days=ctx.rng.randrange(365))
    if tp is uuid.UUID:
        return uuid.UUID(int=ctx.rng.getrandbits(128), version=4)
    if isinstance(tp, type) and "url" in tp.__name__.lower():
        return f"https://example.com/research/{ctx.ticker().lower()}"
    return _gen_str(name, cons, ctx, item)


def _gen_model(schema: type[BaseModel], ctx: _Ctx, depth: int) -> dict[str, Any]:
    outer = ctx.subject
    # The top-level model is about the prompt's first ticker; nested ones each get a fresh one.
    if depth == 0 and ctx.prompt_tickers:
        ctx.subject = ctx.prompt_tickers[0]
    else:
        ctx.subject = ctx.next_ticker()
    try:
        data: dict[str, Any] = {}
        for name, field in schema.model_fields.items():
            alias = field.validation_alias if isinstance(field.validation_alias, str) else None
            key = alias or field.alias or name
            data[key] = _gen(field.annotation, name, _constraints(field.metadata), ctx, depth)
        return data
    finally:
        ctx.subject = outer


def generate_instance(schema: type[T], rng: random.Random, prompt: str = "") -> T:
    """Build a valid, plausible instance of `schema` from `rng`.

    Args:
        schema: A pydantic model class.
        rng: The seeded random source; the same state gives the same instance.
        prompt: Used to pick tickers and sectors the prompt mentions.

    Returns:
        A validated instance.

    Raises:
        GenerationError: When no attempt validated (e.g. a custom validator or regex the
            generator cannot satisfy); register a fixture for such schemas.
    """
    ctx = _Ctx(rng, prompt)
    last: ValidationError | None = None
    for _ in range(8):
        try:
            return schema.model_validate(_gen_model(schema, ctx, 0))
        except ValidationError as exc:
            last = exc
    raise GenerationError(
        f"could not generate a valid {schema.__name__}; register a fixture for it: {last}"
    )
