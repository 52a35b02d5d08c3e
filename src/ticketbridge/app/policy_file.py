"""Load a policy YAML file into ``rules.Policy`` with errors that name the key and line."""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ticketbridge.app.holidays import resolve_country_holidays
from ticketbridge.rules.policy import Policy

HOLIDAY_YEARS = range(2020, 2041)

_NAMED = re.compile(r"^([A-Za-z_][\w]*(?:\.[\w]+)+): (.*)$", re.DOTALL)


class PolicyError(ValueError):
    """A policy file that cannot be used; ``problems`` lists ``(key, line, message)``."""

    def __init__(self, source: str, problems: list[tuple[str, int | None, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = [
            f"{source}:{line if line is not None else '?'}: {key}: {message}"
            for key, line, message in problems
        ]
        super().__init__("invalid policy\n" + "\n".join(lines))


def _line_of(node: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """The 1-based line of the node at ``loc`` (or its nearest existing parent)."""
    best = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = next(
                (
                    (k, v)
                    for k, v in node.value
                    if isinstance(k, yaml.ScalarNode) and k.value == str(part)
                ),
                None,
            )
            if found is None:
                return best
            key_node, node = found
            best = key_node.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return best
            node = node.value[part]
            best = node.start_mark.line + 1
        else:
            return best
    return best


def parse_policy(text: str, *, source: str = "<policy>") -> Policy:
    """Validate policy YAML ``text``; raise PolicyError naming each bad key and its line."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        raise PolicyError(source, [("(syntax)", line, str(getattr(exc, "problem", exc)))]) from exc
    if not isinstance(data, dict):
        raise PolicyError(source, [("(top)", 1, "the policy must be a mapping")])
    try:
        policy = Policy.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            key = ".".join(str(p) for p in loc) or "(top)"
            message = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                message = "unknown key"
            named = _NAMED.match(message)
            if not loc and named:  # a cross-field check names its key in the message
                key, message = named.group(1), named.group(2)
                loc = tuple(key.split("."))
            problems.append((key, _line_of(node, loc), message))
        raise PolicyError(source, problems) from exc
    try:
        # A fixed span of years keeps the fingerprint of an unchanged file stable over time.
        return resolve_country_holidays(policy, years=HOLIDAY_YEARS)
    except ValueError as exc:
        key = str(exc).split(":", 1)[0]
        line = _line_of(node, (*key.split("."),))
        raise PolicyError(source, [(key, line, str(exc).split(": ", 1)[1])]) from exc


def default_policy_text() -> str:
    """The built-in policy, exactly the table in docs/procedure.md."""
    return files("ticketbridge.app").joinpath("default_policy.yaml").read_text(encoding="utf-8")


def load_policy(path: str | Path | None) -> Policy:
    """Load the policy file at ``path``, or the built-in default when ``path`` is None."""
    if path is None:
        return parse_policy(default_policy_text(), source="<built-in policy>")
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(str(path), [("(file)", None, exc.strerror or str(exc))]) from exc
    return parse_policy(text, source=str(path))
