"""The deployment examples (deploy/) parse, and name only settings ticketbridge knows."""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel, SecretStr

from ticketbridge.app.effective_config import SECRETS_DIR_VARIABLE, env_names
from ticketbridge.app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
KUBERNETES = DEPLOY / "kubernetes"
# Every variable name comes from the Settings model (plus the secrets directory's own).
KNOWN = {*env_names(), SECRETS_DIR_VARIABLE}


def _is_secret(annotation: Any) -> bool:
    if annotation is SecretStr:
        return True
    return any(_is_secret(arg) for arg in typing.get_args(annotation))


def secret_names(model: type[BaseModel] = Settings, prefix: str = "TICKETBRIDGE_") -> set[str]:
    """Variables of SecretStr settings: they must never be plain environment values."""
    found: set[str] = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            found |= secret_names(annotation, f"{prefix}{name.upper()}__")
        elif _is_secret(annotation):
            found.add(f"{prefix}{name.upper()}")
    return found


def dockerfile_uid() -> int:
    match = re.search(r"^USER (\d+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert match is not None, "the Dockerfile runs as a numeric USER"
    return int(match.group(1))


def test_the_helpers_see_the_settings() -> None:
    assert "TICKETBRIDGE_FRESHDESK__WEBHOOK_SECRETS" in KNOWN
    assert (
        {
            "TICKETBRIDGE_ADMIN_TOKEN",
            "TICKETBRIDGE_FRESHDESK__WEBHOOK_SECRETS",
            "TICKETBRIDGE_VICTOROPS__REST_URL",
        }
        <= secret_names()
        <= KNOWN
    )
    assert "TICKETBRIDGE_DATABASE_URL" not in secret_names()


# --- compose ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return document


def ticketbridge_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in compose["services"].items()
        if svc.get("image", "").startswith("ticketbridge")
    }


def test_compose_has_postgres_a_migrate_one_shot_and_two_replicas(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert set(services) == {"postgres", "migrate", "ticketbridge"}
    assert services["postgres"]["image"] == "postgres:16"
    assert "pg_isready" in str(services["postgres"]["healthcheck"]["test"])

    migrate = services["migrate"]
    assert migrate["command"] == ["migrate"]
    assert migrate["restart"] == "no"
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"

    app = services["ticketbridge"]
    assert app["deploy"]["replicas"] == 2
    assert app["command"][:1] == ["serve"]
    assert "/readyz" in " ".join(app["healthcheck"]["test"])
    assert app["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "migrate": {"condition": "service_completed_successfully"},
    }
    # Several replicas cannot share one host port: a range, one per replica.
    (port,) = app["ports"]
    assert re.fullmatch(r"(127\.0\.0\.1:)?(\d+)-(\d+):8080", port)


def test_compose_builds_the_image_from_the_dockerfile(compose: dict[str, Any]) -> None:
    for svc in ticketbridge_services(compose).values():
        context = (DEPLOY / svc["build"]["context"]).resolve()
        assert context == ROOT
        assert (context / svc["build"]["dockerfile"]).is_file()


def test_compose_sets_only_known_settings_and_credentials_as_secret_files(
    compose: dict[str, Any],
) -> None:
    declared = compose["secrets"]
    for name, svc in ticketbridge_services(compose).items():
        env = svc["environment"]
        assert set(env) <= KNOWN, name
        assert not set(env) & secret_names(), f"{name}: a credential in plain environment"
        assert env["TICKETBRIDGE_DATABASE_URL"].startswith("postgresql://")
        assert "@postgres:5432/" in env["TICKETBRIDGE_DATABASE_URL"]
        assert env["TICKETBRIDGE_MIGRATE_ON_START"] == "false"
        targets = {s["target"] for s in svc["secrets"]}
        assert {t.upper() for t in targets} <= KNOWN, name
        assert {s["source"] for s in svc["secrets"]} <= set(declared)
        assert {t.upper() for t in targets} >= {
            "TICKETBRIDGE_FRESHDESK__WEBHOOK_SECRETS",
            "TICKETBRIDGE_VICTOROPS__REST_URL",
            "TICKETBRIDGE_ADMIN_TOKEN",
        }


# --- kubernetes -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def manifests() -> dict[str, dict[str, Any]]:
    """Every Kubernetes object in deploy/kubernetes, by kind (one of each)."""
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document is None:
                continue
            assert document["kind"] not in found, f"two {document['kind']} objects"
            found[document["kind"]] = document
    return found


def container(workload: dict[str, Any]) -> dict[str, Any]:
    (only,) = workload["spec"]["template"]["spec"]["containers"]
    assert isinstance(only, dict)
    return only


def test_kubernetes_has_the_objects_and_kustomize_lists_them(
    manifests: dict[str, dict[str, Any]],
) -> None:
    assert {"Deployment", "Service", "Secret", "Job", "Kustomization"} <= set(manifests)
    for resource in manifests["Kustomization"]["resources"]:
        assert (KUBERNETES / resource).is_file()


def test_deployment_probes_and_non_root_security_context(
    manifests: dict[str, dict[str, Any]],
) -> None:
    deployment = manifests["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    app = container(deployment)
    ports = {p["name"]: p["containerPort"] for p in app["ports"]}
    assert ports == {"http": 8080}
    assert app["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert app["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == dockerfile_uid() == 10001
    assert app["securityContext"]["allowPrivilegeEscalation"] is False
    assert deployment["spec"]["replicas"] == 2


@pytest.mark.parametrize("kind", ["Deployment", "Job"])
def test_workloads_read_known_settings_and_the_secret_as_files(
    manifests: dict[str, dict[str, Any]], kind: str
) -> None:
    workload = manifests[kind]
    app = container(workload)
    env = {e["name"]: e.get("value") for e in app["env"]}
    assert set(env) <= KNOWN
    assert not set(env) & secret_names()
    mounts = {m["name"]: m["mountPath"] for m in app["volumeMounts"]}
    volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
    assert volumes["secrets"]["secret"]["secretName"] == manifests["Secret"]["metadata"]["name"]
    assert mounts["secrets"] == env[SECRETS_DIR_VARIABLE]
    assert workload["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True
    if kind == "Job":
        assert app["args"] == ["migrate"]


def test_secret_keys_are_settings_file_names(manifests: dict[str, dict[str, Any]]) -> None:
    keys = set(manifests["Secret"]["stringData"])
    assert all(key == key.lower() for key in keys)
    assert {key.upper() for key in keys} <= KNOWN
    assert {key.upper() for key in keys} >= {
        "TICKETBRIDGE_DATABASE_URL",
        "TICKETBRIDGE_FRESHDESK__WEBHOOK_SECRETS",
        "TICKETBRIDGE_VICTOROPS__REST_URL",
        "TICKETBRIDGE_ADMIN_TOKEN",
    }
    assert manifests["Secret"]["stringData"]["ticketbridge_database_url"].startswith(
        "postgresql://"
    )


def test_service_reaches_the_deployments_pods(manifests: dict[str, dict[str, Any]]) -> None:
    deployment, service = manifests["Deployment"], manifests["Service"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    job_labels = manifests["Job"]["spec"]["template"]["metadata"]["labels"]
    assert not service["spec"]["selector"].items() <= job_labels.items()  # no traffic to it
    port_names = {p["name"] for p in container(deployment)["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names
