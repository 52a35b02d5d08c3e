"""The effective configuration as ``NAME=value`` lines (environment variable names), secrets
masked; and every variable name the settings model knows, derived from the model."""

from __future__ import annotations

import urllib.parse
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, SecretStr

from ticketbridge.app.settings import Settings

MASK = "**********"
# Read by ``load_settings`` itself (where the secret files are), not a field of Settings.
SECRETS_DIR_VARIABLE = "TICKETBRIDGE_SECRETS_DIR"
_PASSWORD_PARAMS = frozenset({"password", "sslpassword"})


def _prefix() -> tuple[str, str]:
    config = Settings.model_config
    return str(config.get("env_prefix", "")), str(config.get("env_nested_delimiter") or "__")


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _walk(model: type[BaseModel], prefix: str, delimiter: str) -> list[tuple[str, str]]:
    """``(variable name, attribute path)`` for every leaf setting, in model order."""
    found: list[tuple[str, str]] = []
    for name, field in model.model_fields.items():
        nested = _nested_model(field.annotation)
        if nested is not None:
            for var, path in _walk(nested, f"{prefix}{name.upper()}{delimiter}", delimiter):
                found.append((var, f"{name}.{path}"))
        else:
            found.append((f"{prefix}{name.upper()}", name))
    return found


def env_names() -> list[str]:
    """Every ``TICKETBRIDGE_...`` variable a setting is read from (secret files: lower case)."""
    return [var for var, _ in _walk(Settings, *_prefix())]


def mask_database_url(url: str) -> str:
    """The URL with its password (in the authority or as a query parameter) masked."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        return MASK  # unparseable: show nothing of it
    text = parsed.set(query={}).render_as_string(hide_password=True)
    if parsed.password is not None:
        text = text.replace(":***@", f":{MASK}@", 1)
    params = [
        (key, value)
        for key, values in parsed.query.items()
        for value in ((values,) if isinstance(values, str) else values)
    ]
    if params:
        text += "?" + "&".join(
            f"{urllib.parse.quote(k)}="
            + (MASK if k.lower() in _PASSWORD_PARAMS else urllib.parse.quote(v))
            for k, v in params
        )
    return text


def _mask_userinfo(value: str) -> str:
    """A URL with ``user:password@`` keeps the user, loses the password."""
    parts = urllib.parse.urlsplit(value)
    if parts.password is None:
        return value
    host = parts.netloc.rsplit("@", 1)[1]
    netloc = f"{parts.username or ''}:{MASK}@{host}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def _render(var: str, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, list | tuple):
        return ",".join(_render(var, item) for item in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        if var.endswith("DATABASE_URL"):
            return mask_database_url(value)
        try:
            return _mask_userinfo(value)
        except ValueError:  # not a URL after all (e.g. a bad port): nothing to mask
            return value
    return str(value)


def effective_settings(settings: Settings) -> list[tuple[str, str]]:
    """``(variable name, value as text)`` for every setting, secrets masked; unset is ''."""
    rows = []
    for var, path in _walk(Settings, *_prefix()):
        value: Any = settings
        for attr in path.split("."):
            value = getattr(value, attr)
        rows.append((var, _render(var, value)))
    return rows


def render_env(settings: Settings, *, secrets_dir: str | None) -> str:
    """The ``config show`` text: a header, then ``NAME=value`` lines."""
    where = f"{secrets_dir} (read)" if secrets_dir else "none (no such directory)"
    lines = [
        "# ticketbridge effective configuration: environment, then secret files, then defaults.",
        f"# secret files: {where}; secrets are masked; an empty value means unset.",
    ]
    lines.extend(f"{var}={text}" for var, text in effective_settings(settings))
    return "\n".join(lines)
