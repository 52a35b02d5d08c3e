"""FastAPI dependencies: the services and the admin-token check."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request

from ticketbridge.app.bootstrap import Services


def from_state(app: Any, name: str) -> Any:
    """``app.state.<name>``, read from the dict Starlette's ``State`` keeps. ``State`` serves
    its attributes through ``__getattr__``, which Python calls only after its own lookup
    failed and built an AttributeError: a few such errors per webhook otherwise. A name not
    set is read the usual way (and raises as it would)."""
    state = app.state
    try:
        return state._state[name]
    except KeyError:
        return getattr(state, name)


def services_of(request: Request) -> Services:
    """The services of the app serving ``request``."""
    services: Services = from_state(request.app, "services")
    return services


async def get_services(request: Request) -> Services:
    # async: FastAPI runs a plain ``def`` dependency in a worker thread, a thread hop per
    # request for an attribute read.
    return services_of(request)


ServicesDep = Annotated[Services, Depends(get_services)]


async def require_admin(request: Request, services: ServicesDep) -> None:
    """Bearer admin token, compared in constant time; unset token means every call is 401."""
    token = services.settings.admin_token
    header = request.headers.get("authorization", "")
    scheme, _, presented = header.partition(" ")
    ok = (
        token is not None
        and bool(token.get_secret_value())
        and scheme.lower() == "bearer"
        and hmac.compare_digest(
            presented.strip().encode("utf-8", "surrogateescape"),
            token.get_secret_value().encode(),
        )
    )
    if not ok:
        raise HTTPException(
            status_code=401, detail="unauthorized", headers={"WWW-Authenticate": "Bearer"}
        )


AdminDep = Depends(require_admin)
