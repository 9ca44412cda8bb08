"""The machinery of settings: how a section declares them, how a file's data is checked
against them, and how the documented example file is written from them.

Plain frozen dataclasses and one small validator (`_build`) rather than pydantic:
trade_agent.py starts from cron every few minutes on a Raspberry Pi with a budget
of 0.3 s and 50 MiB a start, and importing pydantic and building its models cost
about 0.15 s and 8 MB of that.  The standard library keeps what pydantic gave us:
one declaration still gives the validation, the defaults, the typed object the code
reads and the documentation.  A field's annotation says its type (Decimal money,
Path files, Literal choices, lists, optional values, nested sections), `setting()`
its default, bounds and doc, a section's `_check` its cross-field rules.  (jsonschema
would need a second, hand-kept set of classes beside the ones the code reads.)
"""
from __future__ import annotations

import dataclasses
import functools
import math
import re
import types
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal, Self, Union, get_args, get_origin, get_type_hints

import yaml

from includes.redaction import masked

LARGEST = 10 ** 12          # no setting means more: larger numbers only overflow somewhere
SMALLEST = Decimal("1e-12")  # nor finer, in a Decimal
PATH_MAX, NAME_MAX = 1024, 255


# --- declaring settings ------------------------------------------------------------------------------

def setting(default: Any = dataclasses.MISSING, *, gt: Any = None, ge: Any = None, lt: Any = None,
            le: Any = None, pattern: str | None = None, min_length: int | None = None,
            check: Callable[[Any], Any] | None = None, doc: str = "", about: str = "", example: str = "") -> Any:
    """A field's default, its rules and its documentation, kept in the field's metadata
    where `_build` and `example_yaml` read them.

    The bounds and the pattern apply to each number or string, so to each item of
    a list; min_length to the list itself.  check(value) runs last, on a value that
    is not None: it returns the value, perhaps normalized, or raises ValueError.
    A list default is copied for every instance, as dataclasses require.

    The example file shows `doc` as the comment after the value (its lines aligned),
    `about` as comment lines above the key, `example` as commented-out lines below it.
    """
    rules = {name: rule for name, rule in (("gt", gt), ("ge", ge), ("lt", lt), ("le", le), ("pattern", pattern),
                                           ("min_length", min_length), ("check", check), ("doc", doc),
                                           ("about", about), ("example", example))
             if rule is not None and rule != ""}
    if isinstance(default, list):
        return dataclasses.field(default_factory=functools.partial(list, default), metadata=rules)
    return dataclasses.field(default=default, metadata=rules)


class InvalidConfig(ValueError):
    """Settings that failed validation: `problems` holds one line each, str() the first and their count."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        n = len(problems) - 1
        more = f" (and {n} more problem{'s' if n > 1 else ''})" if n else ""
        super().__init__(f"{problems[0]}{more}")


class Section:
    """What every section shares; each subclass is a frozen dataclass of settings.

    Constructing one directly trusts its arguments (the code's defaults, tests);
    from_dict() is the way in for anything read from a file or a command line.
    """

    @classmethod
    def from_dict(cls, data: Any, where: str = "") -> Self:
        """The section of `data`, validated; `where` ("trading") prefixes the key paths of errors.

        Raises InvalidConfig, a ValueError, naming the key path of every problem.
        """
        problems: list[str] = []
        built = _build(cls, data, tuple(where.split(".")) if where else (), problems)
        if problems:
            raise InvalidConfig(problems)
        return built

    @classmethod
    def field_names(cls) -> list[str]:
        """The keys this section accepts, in declaration order."""
        return [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]

    def as_dict(self, *, json: bool = False) -> dict[str, Any]:
        """The settings as plain data that from_dict() takes back; with json, Decimals and Paths as strings."""
        return {name: _plain(getattr(self, name), json) for name in self.field_names()}

    def __post_init__(self) -> None:
        self._check()

    def _check(self) -> None:
        """Rules across fields: raise ValueError naming the keys involved."""


# --- reading YAML --------------------------------------------------------------------------------------

MOST_VALUES = 10_000   # a config holds about 100; YAML aliases can make billions of few lines
MOST_LEVELS = 32


class Refused(yaml.YAMLError):
    """YAML that parses but that no config should be: a key twice, aliases expanding past MOST_VALUES."""


# libyaml's loader when PyYAML has it (its wheels do): 1 ms for the example config, not 9
class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
        """Refuse a key given twice in one mapping: YAML keeps the last one silently."""
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
                seen.setdefault(key, line)
            except TypeError:           # an unhashable key: the validator names it
                continue
            if first is not None:
                raise Refused(f"key {cut(str(key), 40)} is given twice, at lines {first} and {line}; "
                               f"keep one")
        return super().construct_mapping(node, deep=deep)


def read_yaml(text: str) -> Any:
    """The data of YAML `text`: raises yaml.YAMLError, or Refused for a key given twice,
    an alias bomb or a nesting deeper than any config needs."""
    data = yaml.load(text, Loader=_Loader)
    _count_values(data)
    return data


def _count_values(data: Any) -> None:
    """Refuse data whose aliases expand past MOST_VALUES, or that nests deeper than MOST_LEVELS:
    walked as the validator would, without recursion, and stopped as soon as it is too much."""
    stack, seen = [(data, 0)], 0
    while stack:
        value, depth = stack.pop()
        seen += 1
        if seen > MOST_VALUES:
            raise Refused(f"holds more than {MOST_VALUES} values once its YAML aliases are expanded: "
                           f"a config needs no more than a few hundred")
        if depth > MOST_LEVELS:
            raise Refused(f"nests values more than {MOST_LEVELS} levels deep: a config needs 4")
        if isinstance(value, dict):
            stack.extend((v, depth + 1) for item in value.items() for v in item)
        elif isinstance(value, list):
            stack.extend((v, depth + 1) for v in value)


# --- the validator -------------------------------------------------------------------------------------

_INVALID = object()  # what _build and _value return once they have recorded a problem


def _build(cls: type[Section], data: Any, loc: tuple[str, ...], problems: list[str]) -> Any:
    """An instance of the section `cls` from the mapping `data` found at key path `loc`.

    Each problem is appended to `problems` as one line naming the key path; then
    the result is _INVALID.  Keys are taken in the file's order, so the first
    problem reported is the first one in the file.  Values are coerced by their
    annotation (_value), checked against their field's rules, then the section's
    _check runs.
    """
    if isinstance(data, cls):
        return data
    if not isinstance(data, Mapping):
        problems.append(f"{_key(loc)}must be a mapping of keys (got {_got(data)})")
        return _INVALID
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = _hints(cls)
    before, values = len(problems), {}
    for name, given in data.items():
        here = (*loc, str(name))
        field = fields.get(name) if isinstance(name, str) else None
        if field is None:
            problems.append(_unknown(here, list(fields)))
            continue
        value = _value(hints[name], given, field.metadata, here, problems)
        check = field.metadata.get("check")
        if check is not None and value is not _INVALID and value is not None:
            try:
                value = check(value)
            except ValueError as exc:
                problems.append(f"{_key(here)}{exc} (got {_got(given)})")
        values[name] = value
    for name, field in fields.items():
        if name not in data and field.default is dataclasses.MISSING \
                and field.default_factory is dataclasses.MISSING:
            problems.append(f"missing required key {'.'.join((*loc, name))}")
    if len(problems) > before:
        return _INVALID
    try:
        return cls(**values)
    except ValueError as exc:
        problems.append(f"{_key(loc)}{exc}")
        return _INVALID


def _value(tp: Any, given: Any, rules: Mapping[str, Any], loc: tuple[str, ...], problems: list[str]) -> Any:
    """`given` as the annotation `tp` says, within `rules`; else _INVALID, the problem recorded."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):  # only `T | None` is used
        if given is None:
            return None
        (tp,) = [arg for arg in get_args(tp) if arg is not type(None)]
        return _value(tp, given, rules, loc, problems)
    if isinstance(tp, type) and issubclass(tp, Section):
        return _build(tp, given, loc, problems)
    if origin is list:
        if not isinstance(given, (list, tuple)):
            problems.append(f"{_key(loc)}must be a list (got {_got(given)})")
            return _INVALID
        (item_type,) = get_args(tp)
        items = [_value(item_type, item, rules, (*loc, str(i)), problems) for i, item in enumerate(given)]
        if any(item is _INVALID for item in items):
            return _INVALID
        least = rules.get("min_length", 0)
        if len(items) < least:
            problems.append(f"{_key(loc)}must have at least {least} item{'s' if least > 1 else ''} (got {_got(given)})")
            return _INVALID
        return items
    try:
        return _within(scalar(tp, given), rules)
    except ValueError as exc:
        problems.append(f"{_key(loc)}{exc} (got {_got(given)})")
        return _INVALID


_WHOLE = re.compile(r"\s*[+-]?\d+(\.0*)?\s*")


def scalar(tp: Any, given: Any) -> Any:
    """`given` as the single value type `tp`, or ValueError saying what it must be.

    Numbers come from numbers or numeric strings (--sweep passes strings), never
    from booleans; a bool only from a bool; a string only from a string.
    """
    if get_origin(tp) is Literal:
        return _choice(get_args(tp), given)
    if tp in _PLAIN:
        return _PLAIN[tp](given)
    if tp in _NUMBERS:
        if isinstance(given, bool):
            raise ValueError("must be a whole number" if tp is int else "must be a number")
        if isinstance(given, int) and abs(given) > LARGEST or isinstance(given, str) and len(given) > 60:
            raise ValueError(f"must be a number between -{LARGEST:.0e} and {LARGEST:.0e}")
        return _NUMBERS[tp](given)
    raise TypeError(f"no rule for settings of type {tp!r}")  # a new annotation needs a branch here


def _choice(choices: tuple[Any, ...], given: Any) -> Any:
    for choice in choices:
        if given == choice and type(given) is type(choice):
            return choice
    raise ValueError(f"must be one of {', '.join(map(repr, choices))}")


def _bool(given: Any) -> bool:
    if isinstance(given, bool):
        return given
    raise ValueError("must be true or false")


def _str(given: Any) -> str:
    if isinstance(given, str):
        return given
    raise ValueError("must be a string")


def _path(given: Any) -> Path:
    if not isinstance(given, (str, Path)):
        raise ValueError("must be a path (a string)")
    text = str(given)
    if "\0" in text or not text.strip():
        raise ValueError("must be a path: not empty, no NUL character")
    if len(text) > PATH_MAX or any(len(part) > NAME_MAX for part in text.split("/")):
        raise ValueError(f"is too long for a path ({PATH_MAX} characters, {NAME_MAX} a name)")
    return Path(given)


def _int(given: Any) -> int:
    if isinstance(given, int):
        return given
    if isinstance(given, float) and given.is_integer():
        return int(given)
    if isinstance(given, str) and _WHOLE.fullmatch(given):
        return int(Decimal(given.strip()))
    raise ValueError("must be a whole number")


def _float(given: Any) -> float:
    try:
        value = float(given) if isinstance(given, (int, float, str)) else math.nan
    except ValueError:
        value = math.nan
    if math.isnan(value):
        raise ValueError("must be a number")
    if not abs(value) <= LARGEST:
        raise ValueError(f"must be a finite number between -{LARGEST:.0e} and {LARGEST:.0e}")
    return value


def _decimal(given: Any) -> Decimal:
    try:
        number = Decimal(str(given).strip()) if isinstance(given, (int, float, str, Decimal)) else None
    except InvalidOperation:
        number = None
    if number is None:
        raise ValueError("must be a number")
    if not number.is_finite():
        raise ValueError("must be a finite number")
    if number and not SMALLEST <= abs(number) <= LARGEST:  # money stays in Decimal's default context
        raise ValueError(f"must be 0 or between {SMALLEST:.0e} and {LARGEST:.0e} in size")
    return number


_PLAIN: dict[Any, Callable[[Any], Any]] = {bool: _bool, str: _str, Path: _path}
_NUMBERS: dict[Any, Callable[[Any], Any]] = {int: _int, float: _float, Decimal: _decimal}


def _within(value: Any, rules: Mapping[str, Any]) -> Any:
    """`value`, or ValueError naming the bound or pattern it breaks."""
    if "gt" in rules and not value > rules["gt"]:
        raise ValueError(f"must be greater than {rules['gt']}")
    if "ge" in rules and not value >= rules["ge"]:
        raise ValueError(f"must be at least {rules['ge']}")
    if "lt" in rules and not value < rules["lt"]:
        raise ValueError(f"must be less than {rules['lt']}")
    if "le" in rules and not value <= rules["le"]:
        raise ValueError(f"must be at most {rules['le']}")
    if "pattern" in rules and not re.fullmatch(rules["pattern"], value):
        raise ValueError(f"must match the pattern {rules['pattern']}")
    return value


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    """The evaluated annotations of a section (they are strings under `from __future__ import annotations`),
    evaluated once per section."""
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


def _key(loc: tuple[str, ...]) -> str:
    return f"key {'.'.join(cut(part, 40) for part in loc)}: " if loc else ""


def one_line(text: str) -> str:
    """One printable line, whatever a key or a value held: line breaks and control
    characters escaped, the whole cut to what a mail subject can show."""
    return cut("".join(c if c.isprintable() else repr(c)[1:-1] for c in text), 600)


def cut(text: str, most: int = 60) -> str:
    """At most `most` characters, the cut shown by an ellipsis."""
    return text if len(text) <= most else text[:most - 1] + "…"


def _got(value: Any, room: int = 80) -> str:
    """A value as an error line shows it: passwords masked, at most `room` characters, built
    piece by piece (a list's repr would expand every YAML alias in it, however many)."""
    if isinstance(value, (Mapping, list, tuple)):
        opening, closing = ("{", "}") if isinstance(value, Mapping) else ("[", "]")
        text, items = opening, value.items() if isinstance(value, Mapping) else value
        for i, item in enumerate(items):
            if len(text) >= room - 2:
                return text + "…" + closing
            text += ", " if i else ""
            if isinstance(value, Mapping):
                text += _got(item[0], room - len(text)) + ": "
                item = item[1]
            text += _got(item, max(1, room - len(text)))
        return cut(text, room - 1) + closing
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10 ** 60:
        return cut(f"a number of {len(str(abs(value)))} digits", room)
    return cut(repr(masked(value) if isinstance(value, str) else value), room)


def _unknown(loc: tuple[str, ...], known: list[str]) -> str:
    """'unknown key a.b' with the nearest known key, else the list of them."""
    import difflib  # only on this error path: every cron start would pay its import

    close = difflib.get_close_matches(cut(loc[-1], 40), known, n=1)
    hint = f"did you mean {'.'.join(cut(part, 40) for part in (*loc[:-1], *close))}?" if close else \
        f"known keys here: {', '.join(sorted(known))}"
    return f"unknown key {'.'.join(cut(part, 40) for part in loc)} ({hint})"


def _plain(value: Any, json: bool) -> Any:
    if isinstance(value, Section):
        return value.as_dict(json=json)
    if isinstance(value, list):
        return [_plain(item, json) for item in value]
    if json and isinstance(value, (Decimal, Path)):
        return str(value)
    return value


# --- the example file ----------------------------------------------------------------------------------

COMMENT_COLUMN = 27   # where the example's comments after a value start


def example_yaml(cls: type[Section], header: str) -> str:
    """The YAML of every setting of `cls` at its default, each with its documentation:
    the example file the owner copies, written from the one declaration the code reads."""
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        lines += ["", *_example_lines(field, _default(field), "")]     # top-level keys apart
    return "\n".join(lines) + "\n"


def _default(field: dataclasses.Field) -> Any:
    return field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default


def _example_lines(field: dataclasses.Field, value: Any, indent: str) -> list[str]:
    """One setting's lines: its comment above, the key and value with the comment after, a commented example."""
    meta = field.metadata
    lines = [f"{indent}# {line}".rstrip() for line in meta.get("about", "").splitlines()]
    text = f"{indent}{field.name}:" + ("" if isinstance(value, Section) else f" {_yaml_value(value)}")
    doc = meta.get("doc", "").splitlines()
    if not doc:
        lines.append(text)
    for n, line in enumerate(doc):               # the first after the value, the others under it
        start = text.ljust(COMMENT_COLUMN if len(text) < COMMENT_COLUMN - 1 else len(text) + 3) if n == 0 else ""
        lines.append(f"{start.ljust(COMMENT_COLUMN)}# {line}")
    lines += [f"{indent}# {line}".rstrip() for line in meta.get("example", "").splitlines()]
    if isinstance(value, Section):
        for sub in dataclasses.fields(value):  # type: ignore[arg-type]
            lines += _example_lines(sub, getattr(value, sub.name), indent + "  ")
    return lines


def _yaml_value(value: Any) -> str:
    """A default as the owner would type it: 15 for 15.0, [BTC, ETH] for a list, null for None."""
    if isinstance(value, list):
        return "[" + ", ".join(_yaml_value(item) for item in value) + "]"
    if isinstance(value, (float, Decimal)) and value == int(value):
        value = int(value)
    elif isinstance(value, (Decimal, Path)):
        return str(value)
    return yaml.safe_dump(value, default_flow_style=True, width=1000).removesuffix("\n").removesuffix("\n...")
