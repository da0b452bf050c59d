"""Route templates of HTTP triggers, and the matching of request paths against them.

The Functions host routes with ASP.NET Core templates: literal segments (matched
case-insensitively), ``{name}`` parameters, optional ``{name?}`` and defaulted ``{name=value}``
ones, a ``{*rest}`` catch-all, and inline constraints such as ``{id:int}``,
``{code:alpha:length(3)}`` or ``{zip:regex(^\\d{{5}}$)}`` (braces doubled inside a template).
A path is served by the most specific template that matches it, whatever the registration order.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import unquote

from devhost.config import HostConfigError

Check = Callable[[str], bool]

_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)


def _integer_between(low: int, high: int) -> Check:
    def check(value: str) -> bool:
        return re.fullmatch(r"[+-]?\d+", value) is not None and low <= int(value) <= high

    return check


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return value.strip().lower() not in ("nan", "inf", "-inf", "+inf", "infinity")


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _is_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True


def _numbers(args: str, count: tuple[int, ...]) -> list[int]:
    parts = [p.strip() for p in args.split(",")] if args.strip() else []
    if len(parts) not in count:
        raise HostConfigError(f"route constraint expects {count} number(s), got {args!r}")
    try:
        return [int(p) for p in parts]
    except ValueError as exc:
        raise HostConfigError(f"route constraint argument is not an integer: {args!r}") from exc


def _length(args: str) -> Check:
    bounds = _numbers(args, (1, 2))
    low, high = (bounds[0], bounds[0]) if len(bounds) == 1 else (bounds[0], bounds[1])
    return lambda value: low <= len(value) <= high


def _regex(args: str) -> Check:
    # ASP.NET's regex constraint searches (IsMatch), ignoring case.
    pattern = re.compile(args, re.IGNORECASE)
    return lambda value: pattern.search(value) is not None


_SIMPLE_CONSTRAINTS: dict[str, Check] = {
    "int": _integer_between(*_INT32),
    "long": _integer_between(*_INT64),
    "bool": lambda value: value.lower() in ("true", "false"),
    "alpha": lambda value: re.fullmatch(r"[A-Za-z]+", value) is not None,
    "guid": _is_guid,
    "double": _is_float,
    "float": _is_float,
    "decimal": _is_float,
    "datetime": _is_datetime,
    "required": lambda value: value != "",
}
_CONSTRAINTS_WITH_ARGS: dict[str, Callable[[str], Check]] = {
    "minlength": lambda a: (lambda n: lambda v: len(v) >= n)(_numbers(a, (1,))[0]),
    "maxlength": lambda a: (lambda n: lambda v: len(v) <= n)(_numbers(a, (1,))[0]),
    "length": _length,
    "min": lambda a: _integer_between(_numbers(a, (1,))[0], _INT64[1]),
    "max": lambda a: _integer_between(_INT64[0], _numbers(a, (1,))[0]),
    "range": lambda a: _integer_between(*_numbers(a, (2,))),
    "regex": _regex,
}


@dataclass(frozen=True)
class RouteParameter:
    name: str
    checks: tuple[Check, ...] = ()
    optional: bool = False
    default: str | None = None
    catch_all: bool = False


Part = str | RouteParameter  # one piece of a segment: literal text or a parameter


def _split_top_level(text: str, separator: str) -> list[str]:
    """Split on ``separator`` outside parentheses (regex constraints contain ':' and '=')."""
    pieces, depth, start = [], 0, 0
    for index, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth = max(0, depth - 1)
        elif char == separator and depth == 0:
            pieces.append(text[start:index])
            start = index + 1
    pieces.append(text[start:])
    return pieces


def _parse_constraint(text: str, template: str) -> Check:
    match = re.fullmatch(r"(\w+)(?:\((.*)\))?", text, re.DOTALL)
    if not match:
        raise HostConfigError(f"route {template!r}: bad constraint {text!r}")
    name, args = match.group(1).lower(), match.group(2)
    if args is None and name in _SIMPLE_CONSTRAINTS:
        return _SIMPLE_CONSTRAINTS[name]
    if args is not None and name in _CONSTRAINTS_WITH_ARGS:
        return _CONSTRAINTS_WITH_ARGS[name](args)
    raise HostConfigError(f"route {template!r}: unsupported constraint {text!r}")


def _parse_parameter(body: str, template: str) -> RouteParameter:
    catch_all = body.startswith("*")
    body = body.lstrip("*")
    optional = body.endswith("?")
    if optional:
        body = body[:-1]
    default = None
    head, *rest = _split_top_level(body, "=")
    if rest:
        default = "=".join(rest)
    name, *constraints = _split_top_level(head, ":")
    name = name.strip()
    if not re.fullmatch(r"[A-Za-z_]\w*", name):
        raise HostConfigError(f"route {template!r}: bad parameter name {name!r}")
    checks = tuple(_parse_constraint(c, template) for c in constraints)
    return RouteParameter(name, checks, optional, default, catch_all)


def _parse_segment(segment: str, template: str) -> list[Part]:
    parts: list[Part] = []
    literal: list[str] = []
    index = 0
    while index < len(segment):
        char = segment[index]
        if segment.startswith(("{{", "}}"), index):  # escaped brace in a literal
            literal.append(char)
            index += 2
        elif char == "{":
            body: list[str] = []
            index += 1
            while True:
                if index >= len(segment):
                    raise HostConfigError(f"route {template!r}: unclosed '{{'")
                if segment.startswith(("{{", "}}"), index):
                    body.append(segment[index])
                    index += 2
                elif segment[index] == "}":
                    index += 1
                    break
                else:
                    body.append(segment[index])
                    index += 1
            if literal:
                parts.append("".join(literal))
                literal = []
            parts.append(_parse_parameter("".join(body), template))
        elif char == "}":
            raise HostConfigError(f"route {template!r}: unmatched '}}'")
        else:
            literal.append(char)
            index += 1
    if literal:
        parts.append("".join(literal))
    return parts


def _split_segments(text: str) -> list[str]:
    """Split on '/' outside braces (a regex constraint may contain '/')."""
    segments, depth, start = [], 0, 0
    for index, char in enumerate(text):
        if char == "{":
            depth += 1
        elif char == "}":
            depth = max(0, depth - 1)
        elif char == "/" and depth == 0:
            segments.append(text[start:index])
            start = index + 1
    segments.append(text[start:])
    return segments


# The precedence rank of a catch-all segment: the least specific of all.
_CATCH_ALL_RANK = 5


class RouteTemplate:
    """One compiled route template; ``match`` gives the route parameters of a path, or None."""

    def __init__(self, template: str) -> None:
        self.template = template
        text = template.strip().lstrip("~").strip("/")
        self._segments = (
            [_parse_segment(s, template) for s in _split_segments(text)] if text else []
        )
        self._parameters: dict[str, RouteParameter] = {}
        pattern = []
        for parts in self._segments:
            if not parts:
                raise HostConfigError(f"route {template!r}: empty segment")
            groups = []
            for part in parts:
                if isinstance(part, str):
                    groups.append(re.escape(part))
                    continue
                if part.name in self._parameters:
                    raise HostConfigError(f"route {template!r}: parameter {part.name!r} twice")
                self._parameters[part.name] = part
                value = ".*" if part.catch_all else "[^/]+"
                groups.append(f"(?P<{part.name}>{value})")
            lone = parts[0] if len(parts) == 1 else None
            if isinstance(lone, RouteParameter) and (
                lone.optional or lone.default is not None or lone.catch_all
            ):
                pattern.append(f"(?:/{groups[0]})?")  # the whole segment may be left out
            else:
                pattern.append("/" + "".join(groups))
        self._regex = re.compile("^" + "".join(pattern) + "/?$", re.IGNORECASE | re.DOTALL)

    @property
    def catch_all(self) -> bool:
        """Whether the template ends in a catch-all parameter (``{*rest}``)."""
        return _CATCH_ALL_RANK in self.precedence

    @property
    def precedence(self) -> tuple[int, ...]:
        """Lower sorts first: literal < complex segment < constrained < plain < catch-all."""
        ranks = []
        for parts in self._segments:
            if len(parts) > 1:
                ranks.append(2)
            elif isinstance(parts[0], str):
                ranks.append(1)
            elif parts[0].catch_all:
                ranks.append(_CATCH_ALL_RANK)
            else:
                ranks.append(3 if parts[0].checks else 4)
        return tuple(ranks)

    def match(self, raw_path: str) -> dict[str, str] | None:
        """Route parameters of ``raw_path`` (percent-encoded, relative to the route prefix)."""
        # Decode each segment but keep an encoded '/' inside a segment, as ASP.NET does.
        segments = [unquote(s).replace("/", "%2F") for s in raw_path.strip("/").split("/")]
        path = "/" + "/".join(segments) if raw_path.strip("/") else ""
        found = self._regex.match(path)
        if not found:
            return None
        values: dict[str, str] = {}
        for name, parameter in self._parameters.items():
            value = found.group(name)
            if value is None or (parameter.catch_all and value == ""):
                if parameter.default is not None:
                    values[name] = parameter.default
                continue
            if not all(check(value) for check in parameter.checks):
                return None
            values[name] = value
        return values

    def __repr__(self) -> str:
        return f"RouteTemplate({self.template!r})"
