"""Values that validate against a JSON schema: the simulator's structured output.

The SDK's `transform_schema` moves the constraints the API does not enforce (`minimum`,
`maxLength`, `pattern`, `minItems` > 1, ...) into the description as `{key: value, ...}`; they
are read back from there, so a reply also passes the pydantic model's own validation. Integers
inside arrays count up from their minimum and strings at one place of the document never
repeat, which satisfies the usual "ranks 1..N, each once" and "distinct tickers" checks.
"""

from __future__ import annotations

import importlib
import json
import math
import random
import re
import uuid
from typing import Any

__all__ = ["WORDS", "SchemaError", "constraints", "fake_value", "regex_sample", "sentence"]

_VOCABULARY = (
    "revenue margin growth pricing demand supply capacity backlog cycle share market leader "
    "moat scale cost capital returns cash flow balance sheet debt valuation multiple earnings "
    "guidance consensus risk regulation competition customers contracts recurring subscription "
    "platform network adoption secular trend catalyst upside downside estimate quarter year "
    "segment mix operating leverage dividend buyback management execution strategy inventory "
    "channel volume outlook sector industry peers premium discount investment thesis"
)
WORDS = tuple(_VOCABULARY.split())
"""The simulator's vocabulary for generated text."""

_KEYS = (
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minItems",
    "maxItems",
    "uniqueItems",
    "pattern",
    "format",
)
_SPLIT = re.compile(r"(?:^|, )(" + "|".join(_KEYS) + r"): ")
_FORMATS = {
    "date-time": "2026-01-15T12:00:00Z",
    "date": "2026-01-15",
    "time": "12:00:00",
    "duration": "P1D",
    "email": "analyst@example.com",
    "hostname": "example.com",
    "uri": "https://example.com/research",
    "ipv4": "192.0.2.1",
    "ipv6": "2001:db8::1",
}


class SchemaError(ValueError):
    """The schema uses something the generator cannot satisfy."""


def _scalar(text: str) -> Any:
    text = text.strip()
    if text in ("True", "False"):
        return text == "True"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def constraints(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema's constraints, from its keys and from a trailing `{key: value, ...}` in its
    description (where `anthropic.transform_schema` puts the ones the API does not enforce).

    Args:
        schema: One (sub)schema.

    Returns:
        Constraint name -> value; keys of the schema win over the description.
    """
    found: dict[str, Any] = {}
    desc = schema.get("description")
    if isinstance(desc, str) and desc.rstrip().endswith("}"):
        desc = desc.rstrip()
        start = desc.rfind("\n\n{")
        start = start + 2 if start >= 0 else (0 if desc.startswith("{") else -1)
        if start >= 0:
            parts = _SPLIT.split(desc[start + 1 : -1])
            # parts: [leading text, key, value, key, value, ...]
            for key, value in zip(parts[1::2], parts[2::2], strict=True):
                found[key] = value if key == "pattern" else _scalar(value)
    found.update({k: schema[k] for k in _KEYS if k in schema})
    return found


def sentence(rng: random.Random, chars: int) -> str:
    """About `chars` characters of prose from `WORDS` (at least one word).

    Args:
        rng: The source of randomness.
        chars: Target length.

    Returns:
        Words joined by spaces, sentences capitalised and ended with a period.
    """
    out: list[str] = []
    length = 0
    new_sentence = True
    while length < chars or not out:
        word = rng.choice(WORDS)
        if new_sentence:
            word = word.capitalize()
        out.append(word)
        length += len(word) + 1
        new_sentence = rng.random() < 0.08
        if new_sentence:
            out[-1] += "."
    text = " ".join(out)
    return text if text.endswith(".") else text + "."


def regex_sample(pattern: str, rng: random.Random) -> str:
    """A string that `re.search(pattern, ...)` accepts.

    Args:
        pattern: A regular expression (JSON Schema's `pattern`).
        rng: The source of randomness.

    Returns:
        A matching string.

    Raises:
        SchemaError: No attempt matched (back-references, look-arounds and the like).
    """
    # the standard library's own regex parser (private, but stable since 3.11)
    c: Any = importlib.import_module("re._constants")
    _parser: Any = importlib.import_module("re._parser")

    try:
        parsed = _parser.parse(pattern)
    except re.error as exc:
        raise SchemaError(f"bad pattern {pattern!r}: {exc}") from None
    letters = [chr(x) for x in range(ord("A"), ord("Z") + 1)]

    def one_of(items: list[tuple[Any, Any]]) -> str:
        negate = any(op is c.NEGATE for op, _ in items)
        members: list[str] = []
        op: Any
        for op, av in items:
            if op is c.LITERAL:
                members.append(chr(av))
            elif op is c.RANGE:
                members += [chr(x) for x in range(av[0], min(av[1], av[0] + 200) + 1)]
            elif op is c.CATEGORY:
                members += {
                    c.CATEGORY_DIGIT: list("0123456789"),
                    c.CATEGORY_WORD: [*letters, *"abcxyz019_"],
                    c.CATEGORY_SPACE: [" "],
                }.get(av, ["x"])
        if negate:
            members = [ch for ch in [*letters, *"abcxyz0123456789"] if ch not in members]
        return str(rng.choice(members))

    def gen(sub: Any) -> str:
        out: list[str] = []
        for op, av in sub:
            if op is c.LITERAL:
                out.append(chr(av))
            elif op is c.NOT_LITERAL:
                out.append("A" if chr(av) != "A" else "B")
            elif op is c.ANY:
                out.append(rng.choice(letters))
            elif op is c.IN:
                out.append(one_of(av))
            elif op in (c.MAX_REPEAT, c.MIN_REPEAT, getattr(c, "POSSESSIVE_REPEAT", None)):
                low, high, item = av
                top = low + 4 if high == c.MAXREPEAT else min(high, low + 4)
                count = rng.randint(min(low + 2, top), top)
                out += [gen(item) for _ in range(count)]
            elif op is c.SUBPATTERN:
                out.append(gen(av[-1]))
            elif op is c.BRANCH:
                out.append(gen(rng.choice(av[1])))
            elif op is c.CATEGORY:
                out.append({c.CATEGORY_DIGIT: "7", c.CATEGORY_SPACE: " "}.get(av, "a"))
            elif op is c.AT:
                continue
            else:
                raise SchemaError(f"pattern {pattern!r}: cannot generate {op}")
        return "".join(out)

    for _ in range(20):
        value = gen(parsed)
        if re.search(pattern, value):
            return value
    raise SchemaError(f"no sample of pattern {pattern!r} matched")


class _Faker:
    def __init__(self, root: dict[str, Any], rng: random.Random, false_share: float) -> None:
        self.root = root
        self.rng = rng
        self.false_share = false_share
        self.seen: dict[str, set[str]] = {}

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        for _ in range(32):
            ref = schema.get("$ref")
            if not isinstance(ref, str):
                return schema
            if not ref.startswith("#/"):
                raise SchemaError(f"only local $ref is supported, got {ref!r}")
            node: Any = self.root
            for part in ref[2:].split("/"):
                node = node[part.replace("~1", "/").replace("~0", "~")]
            schema = node
        raise SchemaError("$ref chain too deep")

    def value(self, schema: dict[str, Any], path: str, index: int | None) -> Any:
        schema = self.resolve(schema)
        if "const" in schema:
            return schema["const"]
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self.rng.choice(schema["enum"])
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list) and schema[key]:
                options = [s for s in schema[key] if self.resolve(s).get("type") != "null"]
                return self.value((options or schema[key])[0], path, index)
        if isinstance(schema.get("allOf"), list) and schema["allOf"]:
            merged: dict[str, Any] = {}
            for part in schema["allOf"]:
                merged.update(self.resolve(part))
            return self.value(merged, path, index)
        kind = schema.get("type")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        if kind is None:
            kind = "object" if "properties" in schema else "string"
        rule = constraints(schema)
        if kind == "object":
            props = schema.get("properties") or {}
            return {name: self.value(sub, f"{path}.{name}", index) for name, sub in props.items()}
        if kind == "array":
            return self.array(schema, rule, path)
        if kind == "string":
            return self.string(rule, path)
        if kind == "integer":
            return self.integer(rule, index)
        if kind == "number":
            return self.number(rule)
        if kind == "boolean":
            return self.rng.random() >= self.false_share
        if kind == "null":
            return None
        raise SchemaError(f"unsupported type {kind!r} at {path or '$'}")

    def array(self, schema: dict[str, Any], rule: dict[str, Any], path: str) -> list[Any]:
        low = int(rule.get("minItems", 0))
        high = int(rule.get("maxItems", max(low, 4)))
        count = min(max(self.rng.randint(2, 4), low), high)
        items = schema.get("items") or {"type": "string"}
        return [self.value(items, f"{path}[]", i) for i in range(count)]

    def string(self, rule: dict[str, Any], path: str) -> str:
        seen = self.seen.setdefault(path, set())
        low = int(rule.get("minLength", 0))
        high = int(rule.get("maxLength", 10_000))
        for attempt in range(50):
            if "pattern" in rule:
                text = regex_sample(str(rule["pattern"]), self.rng)
            elif rule.get("format") == "uuid":
                text = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
            elif rule.get("format") in _FORMATS and attempt == 0:
                text = _FORMATS[str(rule["format"])]
            else:
                short = path.rsplit(".", 1)[-1] in ("name", "title", "ticker", "label", "id")
                target = self.rng.randint(8, 24) if short else self.rng.randint(40, 160)
                target = min(max(target, low), high)
                text = sentence(self.rng, target)
                if short:
                    text = text.rstrip(".").replace(".", "").title()
                if len(text) > high:
                    text = text[:high].rstrip() or text[:high]
                while len(text) < low:
                    text += " " + sentence(self.rng, low - len(text))
                text = text[:high]
            if text not in seen:
                seen.add(text)
                return text
        return text

    def integer(self, rule: dict[str, Any], index: int | None) -> int:
        low, high = self._bounds(rule, integer=True)
        low_i = math.ceil(low) if low is not None else (0 if high is None else int(high) - 10)
        high_i = math.floor(high) if high is not None else low_i + 10
        if high_i < low_i:
            raise SchemaError(f"no integer in [{low}, {high}]")
        if index is not None:  # inside an array: count up, so siblings differ
            return low_i + index % (high_i - low_i + 1)
        return self.rng.randint(low_i, high_i)

    def number(self, rule: dict[str, Any]) -> float:
        low, high = self._bounds(rule, integer=False)
        low_f = low if low is not None else 0.0
        high_f = high if high is not None else low_f + 100.0
        value = round(low_f + (high_f - low_f) * (0.1 + 0.8 * self.rng.random()), 2)
        return min(max(value, low_f), high_f)

    @staticmethod
    def _bounds(rule: dict[str, Any], *, integer: bool) -> tuple[float | None, float | None]:
        step = 1 if integer else 1e-6
        low = rule.get("minimum")
        high = rule.get("maximum")
        if isinstance(rule.get("exclusiveMinimum"), int | float):
            low = rule["exclusiveMinimum"] + step
        if isinstance(rule.get("exclusiveMaximum"), int | float):
            high = rule["exclusiveMaximum"] - step
        return (
            float(low) if isinstance(low, int | float) else None,
            float(high) if isinstance(high, int | float) else None,
        )


def fake_value(schema: dict[str, Any], rng: random.Random, *, false_share: float = 0.0) -> Any:
    """A JSON value that validates against `schema`.

    Args:
        schema: A JSON schema (as `output_config.format.schema` carries it).
        rng: The source of randomness (seed it for a deterministic answer).
        false_share: Share of booleans that come out `false`.

    Returns:
        The value (dicts, lists, str, int, float, bool, None).

    Raises:
        SchemaError: The schema uses something unsupported.
    """
    value = _Faker(schema, rng, false_share).value(schema, "", None)
    json.dumps(value)  # always JSON: fail here rather than in the reply
    return value
