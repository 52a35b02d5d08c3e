"""``ticketbridge policy schema``: the policy file's JSON Schema, for editors and CI checks.

The schema is derived from ``rules.policy.Policy`` (the model that validates policy files), so
it cannot drift from what ``check-policy`` accepts on the keys and types it describes. Checks
that span keys (every priority present, only Urgent and High page, calendars that exist) stay
with ``check-policy``: the schema helps an editor complete and flag keys, it does not replace it.
"""

from __future__ import annotations

import json
from typing import Any

import typer
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import core_schema

from ticketbridge.rules.model import Priority
from ticketbridge.rules.policy import Policy

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
# What rules.durations.parse_duration accepts: a whole number greater than zero and one unit.
DURATION_PATTERN = r"^\s*0*[1-9][0-9]*\s*[smhd]\s*$"


class _PolicySchema(GenerateJsonSchema):
    def timedelta_schema(self, schema: core_schema.TimedeltaSchema) -> dict[str, Any]:
        # Policy files write durations as 30m, 2h, 90s, 3d: not ISO 8601, which pydantic's
        # default ``format: duration`` would announce.
        return {
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A whole number and a unit: s, m, h or d (30m, 2h, 72h, 1d).",
        }


def policy_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a policy file."""
    schema = Policy.model_json_schema(mode="validation", schema_generator=_PolicySchema)
    schema["$schema"] = SCHEMA_DIALECT
    schema["title"] = "ticketbridge policy"
    # The model checks this after validation; in the schema an editor can flag it at once.
    schema["properties"]["priorities"]["required"] = [p.value for p in Priority]
    return {"$schema": schema.pop("$schema"), **schema}


def schema_command() -> None:
    """Print the policy file's JSON Schema (for editor completion and CI checks)."""
    typer.echo(json.dumps(policy_schema(), indent=2, ensure_ascii=False))
