"""The deployment files, checked without a container engine: docker-compose.yml's
services, builds, environment (every variable known to Settings, and together a valid
PostgreSQL configuration), healthchecks, dependencies and commands (parsed by the real
``prep-es`` parser), and the Dockerfile's base image, user and command."""

from __future__ import annotations

import re
import secrets
import shlex
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from prep_es.cli.parser import build_parser
from prep_es.store.settings import ENV_PREFIX, PostgresLocation, Settings, load_settings
from tests.support import TEST_MASTER_KEY

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
API_SERVICES = ("api-1", "api-2")
PROJECTOR_SERVICE = "projector"
APP_SERVICES = (*API_SERVICES, PROJECTOR_SERVICE)
JWT_SECRET = "deployment-test-secret-" + secrets.token_urlsafe(32)
SHELL = {"PREP_ES_JWT_SECRET": JWT_SECRET, "PREP_ES_MASTER_KEY": TEST_MASTER_KEY}
"""What the operator exports before ``docker compose up``."""
INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?:(?P<kind>:-|:\?)(?P<default>[^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict)
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose["services"]
    assert isinstance(found, dict)
    return found


def interpolate(value: str, shell: dict[str, str]) -> str:
    """Compose's ``${NAME}``, ``${NAME:-default}`` and ``${NAME:?error}`` against
    ``shell``; a missing required variable fails as compose would."""

    def replace(match: re.Match[str]) -> str:
        name, kind, default = match["name"], match["kind"], match["default"]
        if shell.get(name):
            return shell[name]
        if kind == ":?":
            pytest.fail(f"compose would refuse to start: {name}: {default}")
        return default or ""

    return INTERPOLATION.sub(replace, value)


def environment_of(service: dict[str, Any], shell: dict[str, str]) -> dict[str, str]:
    environment = service.get("environment", {})
    assert isinstance(environment, dict), "environment as a mapping"
    return {name: interpolate(str(value), shell) for name, value in environment.items()}


def command_of(service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    if isinstance(command, str):
        return shlex.split(command)
    assert isinstance(command, list)
    return [str(part) for part in command]


def healthcheck_text(service: dict[str, Any]) -> str:
    test = service["healthcheck"]["test"]
    return " ".join(test) if isinstance(test, list) else str(test)


def test_the_services_of_the_scaled_shape(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {"postgres", "redis", *APP_SERVICES}
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    for name in APP_SERVICES:
        build = services[name]["build"]
        context = build if isinstance(build, str) else build["context"]
        assert (ROOT / context / "Dockerfile").is_file(), name


def test_every_service_has_a_healthcheck_that_probes_it(
    services: dict[str, dict[str, Any]],
) -> None:
    assert "pg_isready" in healthcheck_text(services["postgres"])
    assert "redis-cli ping" in healthcheck_text(services["redis"])
    for name in API_SERVICES:
        probe = healthcheck_text(services[name])
        assert "http://127.0.0.1:8000/readyz" in probe, name
    assert "prep-es projections status" in healthcheck_text(services[PROJECTOR_SERVICE])
    for name, service in services.items():
        check = service["healthcheck"]
        assert check["test"][0] in {"CMD", "CMD-SHELL"}, name
        assert {"interval", "timeout", "retries"} <= set(check), name


def test_application_services_wait_for_healthy_postgres_and_redis(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in APP_SERVICES:
        depends_on = services[name]["depends_on"]
        assert depends_on == {
            "postgres": {"condition": "service_healthy"},
            "redis": {"condition": "service_healthy"},
        }, name


def test_environment_names_are_known_settings_and_make_a_valid_configuration(
    services: dict[str, dict[str, Any]],
) -> None:
    known = {ENV_PREFIX + name.upper() for name in Settings.model_fields}
    shell = SHELL
    postgres = environment_of(services["postgres"], shell)
    for name in APP_SERVICES:
        environment = environment_of(services[name], shell)
        names = set(environment)
        assert names <= known | {"PROMETHEUS_MULTIPROC_DIR"}, names - known
        assert {
            "PREP_ES_DATABASE_URL",
            "PREP_ES_REDIS_URL",
            "PREP_ES_JWT_SECRET",
            "PREP_ES_MASTER_KEY",
        } <= names
        settings = load_settings(environment)
        assert settings.require_production_secret() is not None
        location = settings.database
        assert isinstance(location, PostgresLocation)
        assert location.host == "postgres"
        assert (location.user, location.password, location.dbname) == (
            postgres["POSTGRES_USER"],
            postgres["POSTGRES_PASSWORD"],
            postgres["POSTGRES_DB"],
        )
        assert settings.redis_url is not None
        assert settings.redis_url.startswith("redis://redis:6379/")


@pytest.mark.parametrize("secret", ["PREP_ES_JWT_SECRET", "PREP_ES_MASTER_KEY"])
def test_compose_refuses_to_start_without_a_jwt_secret_or_a_master_key(
    services: dict[str, dict[str, Any]], secret: str
) -> None:
    shell = {name: value for name, value in SHELL.items() if name != secret}
    for name in APP_SERVICES:
        with pytest.raises(pytest.fail.Exception, match=secret):
            environment_of(services[name], shell)


def test_the_readme_exports_every_variable_compose_requires() -> None:
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"### The scaled shape\n.*?```sh\n(.*?)```", readme, re.DOTALL)
    assert found is not None, "the README shows no way to start the scaled shape"
    set_there = set(re.findall(r"^(?:export )?(\w+)=", found.group(1), re.MULTILINE))
    set_there |= set(re.findall(r"\b(PREP_ES_\w+)=", found.group(1)))
    required = {
        match["name"]
        for match in INTERPOLATION.finditer(COMPOSE_FILE.read_text())
        if match["kind"] == ":?"
    }
    assert required <= set_there, f"docker compose up would refuse: {required - set_there}"


def test_api_replicas_serve_without_projectors_and_one_worker_projects(
    services: dict[str, dict[str, Any]],
) -> None:
    parser = build_parser()
    projecting: Counter[str] = Counter()
    for name in APP_SERVICES:
        command = command_of(services[name])
        assert command[0] == "prep-es", name
        arguments = parser.parse_args(command[1:])
        if arguments.command == "serve":
            assert arguments.no_projector, f"{name} must not run projectors"
            assert arguments.host == "0.0.0.0"
            assert environment_of(services[name], SHELL)["PREP_ES_RUN_PROJECTORS"] == "false"
        else:
            assert arguments.command == "project", name
            projecting[name] += 1
    assert projecting == {PROJECTOR_SERVICE: 1}
    ports = [port for name in API_SERVICES for port in services[name]["ports"]]
    assert len({str(port).split(":")[0] for port in ports}) == len(API_SERVICES)
    assert all(str(port).endswith(":8000") for port in ports)


def test_dockerfile_installs_the_package_and_serves_as_a_non_root_user() -> None:
    instructions = [
        line.strip()
        for line in DOCKERFILE.read_text().replace("\\\n", " ").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert instructions[0] == "FROM python:3.11-slim"
    runs = " ".join(line for line in instructions if line.startswith("RUN "))
    assert "pip install /src" in runs
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users, "no USER: the container would run as root"
    assert users[-1].split(":")[0] not in {"root", "0"}
    [command] = [line for line in instructions if line.startswith("CMD ")]
    assert command.startswith('CMD ["prep-es", "serve"')
    arguments = build_parser().parse_args(yaml.safe_load(command.removeprefix("CMD "))[1:])
    assert arguments.command == "serve"
    assert arguments.host == "0.0.0.0"
    copied = {line.split()[1] for line in instructions if line.startswith("COPY ")}
    packages = {"prep_es", "aggregates", "commands", "projections", "queries", "api"}
    assert packages <= copied
