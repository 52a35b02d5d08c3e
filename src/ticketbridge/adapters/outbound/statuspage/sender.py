"""The status-page port (what ticketbridge needs of any status page) and the Sender that maps
status-page effect payloads onto it.

The port speaks Atlassian Statuspage's vocabulary, because it is the common denominator of
the products we may target; an adapter for another product (Cachet's numeric codes,
Instatus's upper-case names) maps from these canonical values:

- incident status: ``investigating``, ``identified``, ``monitoring``, ``resolved``;
- impact: ``none``, ``minor``, ``major``, ``critical``;
- component status: ``operational``, ``degraded_performance``, ``partial_outage``,
  ``major_outage``, ``under_maintenance``.

Components are named by the caller; the adapter turns names into the product's ids.
``open_incident`` must be idempotent per ``marker``: whatever the retries (including a create
whose reply was lost), one ticket gets at most one open status-page incident.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final, Literal, Protocol, get_args

from ticketbridge.adapters.outbound.errors import AdapterError
from ticketbridge.adapters.outbound.ports import Sent

IncidentStatus = Literal["investigating", "identified", "monitoring", "resolved"]
Impact = Literal["none", "minor", "major", "critical"]
ComponentStatus = Literal[
    "operational", "degraded_performance", "partial_outage", "major_outage", "under_maintenance"
]

INCIDENT_STATUSES: Final[frozenset[str]] = frozenset(get_args(IncidentStatus))
IMPACTS: Final[frozenset[str]] = frozenset(get_args(Impact))
COMPONENT_STATUSES: Final[frozenset[str]] = frozenset(get_args(ComponentStatus))
RESOLVED: Final = "resolved"
OPERATIONAL: Final = "operational"
# An incident is opened in any status but resolved (the rules open it as "investigating").
OPEN_STATUSES: Final[frozenset[str]] = INCIDENT_STATUSES - {RESOLVED}

NO_INCIDENT = "no status-page incident was opened for this ticket"
_MAX_ECHO = 40


class StatusPage(Protocol):
    """A status page: open, update and resolve one public incident per ticket."""

    async def open_incident(
        self,
        *,
        marker: str,
        name: str,
        status: str,
        impact: str,
        body: str,
        components: Sequence[str],
        component_status: str,
    ) -> dict[str, Any]:
        """Open an incident (or find the one already opened with ``marker``) and set the
        named components to ``component_status``. Returns at least ``{"incident_id": str}``
        (plus e.g. ``"shortlink"`` and ``"existing"``)."""
        ...

    async def update_incident(
        self,
        incident_id: str,
        *,
        status: str,
        body: str,
        components: Sequence[str],
        component_status: str | None,
    ) -> dict[str, Any]:
        """Post an update; set the named components to ``component_status`` unless None."""
        ...

    async def resolve_incident(
        self, incident_id: str, *, body: str, components: Sequence[str]
    ) -> dict[str, Any]:
        """Resolve the incident and restore the named components to operational."""
        ...


class StatusPageSender:
    """Carries out status-page effects (``open``, ``update``, ``resolve``) on any StatusPage.

    Payloads (as the rules build them; ``refs.incident`` is what ``open`` returned)::

        {"action": "open", "marker", "name", "status", "impact", "body", "components",
         "component_status"}
        {"action": "update", "refs": {"incident": {"incident_id", ...}}, "status", "body",
         "components", "component_status" (or None: leave the components as they are)}
        {"action": "resolve", "refs": {"incident": {"incident_id", ...}}, "body", "components"}

    A malformed payload is refused before any call with a non-retryable AdapterError.
    """

    def __init__(self, port: StatusPage) -> None:
        self._port = port

    def __repr__(self) -> str:
        return f"StatusPageSender({self._port!r})"

    async def send(self, payload: dict[str, Any], *, effect_key: str) -> Sent:
        """Carry out one status-page effect or raise AdapterError."""
        if not isinstance(payload, dict):
            raise AdapterError("status-page payload is not an object", retryable=False)
        action = payload.get("action")
        if action == "open":
            result = await self._port.open_incident(
                marker=_text(payload, "marker"),
                name=_text(payload, "name"),
                status=_choice(payload, "status", OPEN_STATUSES),
                impact=_choice(payload, "impact", IMPACTS),
                body=_text(payload, "body"),
                components=_names(payload),
                component_status=_choice(payload, "component_status", COMPONENT_STATUSES),
            )
            return Sent(201, _checked(result))
        if action == "update":
            incident_id = _incident_id(payload)
            status = _choice(payload, "status", INCIDENT_STATUSES)
            if status == RESOLVED:
                raise AdapterError(
                    "status-page update to resolved refused: the resolve action restores "
                    "the components",
                    retryable=False,
                )
            component_status = payload.get("component_status")
            if component_status is not None:
                component_status = _choice(payload, "component_status", COMPONENT_STATUSES)
            result = await self._port.update_incident(
                incident_id,
                status=status,
                body=_text(payload, "body"),
                components=_names(payload),
                component_status=component_status,
            )
            return Sent(200, _checked(result))
        if action == "resolve":
            incident_id = _incident_id(payload)
            result = await self._port.resolve_incident(
                incident_id, body=_text(payload, "body"), components=_names(payload)
            )
            return Sent(200, _checked(result))
        raise AdapterError(f"unknown status-page action {_echo(action)}", retryable=False)


def _echo(value: object) -> str:
    return repr(str(value)[:_MAX_ECHO])


def _text(payload: dict[str, Any], key: str) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or not value.strip():
        raise AdapterError(f"status-page payload without a {key} refused", retryable=False)
    return value


def _choice(payload: dict[str, Any], key: str, allowed: frozenset[str]) -> str:
    value = payload.get(key)
    if not isinstance(value, str) or value not in allowed:
        raise AdapterError(
            f"status-page payload with an invalid {key} {_echo(value)} refused "
            f"(one of {', '.join(sorted(allowed))})",
            retryable=False,
        )
    return value


def _names(payload: dict[str, Any]) -> list[str]:
    value = payload.get("components")
    # A bare string is a Sequence too: "api" would become ["a", "p", "i"].
    if not isinstance(value, list) or not all(
        isinstance(name, str) and name.strip() for name in value
    ):
        raise AdapterError(
            "status-page payload whose components are not a list of names refused",
            retryable=False,
        )
    return list(value)


def _incident_id(payload: dict[str, Any]) -> str:
    refs = payload.get("refs")
    incident = refs.get("incident") if isinstance(refs, dict) else None
    incident_id = incident.get("incident_id") if isinstance(incident, dict) else None
    if not isinstance(incident_id, str) or not incident_id.strip():
        raise AdapterError(NO_INCIDENT, retryable=False)
    return incident_id


def _checked(result: Any) -> dict[str, Any]:
    """What the port answered, if it names the incident (a port bug otherwise)."""
    if not isinstance(result, dict) or not isinstance(result.get("incident_id"), str):
        raise AdapterError("status page answered without an incident_id", retryable=False)
    return result
