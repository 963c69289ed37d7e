"""infra/: the compose file is valid Compose and means what it says; the Dockerfile is sound.

`docker compose config` is the real check where the Compose plugin is installed; without it
the file is interpolated the way Compose does (from infra/.env.example) and validated
against the Compose Specification schema vendored in infra/ (see compose-spec.NOTICE).
Then the semantics Compose cannot know: every application variable is a real setting that
parses, every command is a real CLI command, every dependency exists and is healthy-checked.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from api.cli import main as cli
from api.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
COMPOSE = INFRA / "docker-compose.yml"
ENV_EXAMPLE = INFRA / ".env.example"
SECRETS = {"ORTHOVAULT_MASTER_KEY": "a" * 43 + "=", "ORTHOVAULT_TOKEN_SECRET": "t" * 40}
_VARIABLE = re.compile(
    r"\$(?:\$|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))")


class MissingVariable(ValueError):
    pass


def env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's interpolation: $$, ${X}, ${X:-d}, ${X-d}, ${X:?err}, ${X?err}, $X."""
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("braced") or match.group("plain")
        op, arg = match.group("op"), match.group("arg") or ""
        present = name in env
        empty = not env.get(name)
        if op in (":?", "?") and (empty if op == ":?" else not present):
            raise MissingVariable(f"{name}: {arg}")
        if op in (":-", "-") and (empty if op == ":-" else not present):
            return arg
        return env.get(name, "")

    return _VARIABLE.sub(substitute, value)


def referenced_variables(text: str) -> set[str]:
    return {m.group("braced") or m.group("plain") for m in _VARIABLE.finditer(text)
            if m.group(0) != "$$"}


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any]) -> dict[str, Any]:
    return interpolate(raw, {**env_file(ENV_EXAMPLE), **SECRETS})


def app_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: service for name, service in compose["services"].items()
            if "build" in service}


def test_compose_file_matches_the_compose_specification(compose):
    schema = json.loads((INFRA / "compose-spec.schema.json").read_text())
    validator = jsonschema.Draft201909Validator(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator.iter_errors(compose)]
    assert errors == []


def test_the_schema_check_would_catch_a_broken_file(compose):
    schema = json.loads((INFRA / "compose-spec.schema.json").read_text())
    broken = json.loads(json.dumps(compose))
    broken["services"]["api"]["depends_on"]["postgres"]["condition"] = "when_ready"
    broken["services"]["worker"]["restart_policy"] = "always"
    assert len(list(jsonschema.Draft201909Validator(schema).iter_errors(broken))) == 2


def _compose_command() -> list[str] | None:
    """`docker compose` (v2 plugin) or `docker-compose` (v1, Debian's package), if present."""
    if shutil.which("docker") and subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.mark.skipif(_compose_command() is None,
                    reason="no docker compose installed; the schema test stands in for it")
def test_docker_compose_config_accepts_the_file_and_refuses_missing_secrets(tmp_path):
    command = [*(_compose_command() or []), "-f", str(COMPOSE), "--env-file"]
    filled = tmp_path / "filled.env"
    filled.write_text("\n".join(f"{k}={v}" for k, v in
                                {**env_file(ENV_EXAMPLE), **SECRETS}.items()) + "\n")
    ok = subprocess.run([*command, str(filled), "config", "--quiet"], capture_output=True,
                        text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    refused = subprocess.run([*command, str(ENV_EXAMPLE), "config", "--quiet"],
                             capture_output=True, text=True, check=False)
    assert refused.returncode != 0 and "ORTHOVAULT_MASTER_KEY" in refused.stderr


def test_secrets_must_be_set_before_the_stack_starts(raw):
    with pytest.raises(MissingVariable, match="ORTHOVAULT_MASTER_KEY"):
        interpolate(raw, env_file(ENV_EXAMPLE))  # shipped empty on purpose


def test_every_variable_the_file_uses_is_in_the_example_env():
    assert referenced_variables(COMPOSE.read_text()) <= set(env_file(ENV_EXAMPLE))


def test_the_distributed_deployment_has_every_part(compose):
    services = compose["services"]
    assert {"postgres", "kafka", "minio", "minio-init", "api", "worker", "projections",
            "relay", "consumers"} <= set(services)
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    roles = {name: service["command"][0] for name, service in app_services(compose).items()}
    assert roles == {"api": "api", "worker": "worker", "projections": "projections",
                     "relay": "relay", "consumers": "consumers"}
    assert all(services[n]["deploy"]["replicas"] >= 2 for n in ("api", "worker",
                                                                "projections", "relay"))


def test_application_commands_are_real_cli_commands(compose):
    for name, service in app_services(compose).items():
        assert service["command"][0] in cli.commands, name


def test_application_environment_is_real_settings_that_parse(compose, monkeypatch):
    fields = {f"ORTHOVAULT_{field.upper()}" for field in Settings.model_fields}
    for name, service in app_services(compose).items():
        environment = service["environment"]
        assert set(environment) <= fields, (name, set(environment) - fields)
        for key in list(fields):
            monkeypatch.delenv(key, raising=False)
        for key, value in environment.items():
            monkeypatch.setenv(key, str(value))
        settings = Settings()
        assert settings.mode == "production"
        assert settings.database_url and settings.database_url.startswith("postgresql://")
        assert settings.kafka_bootstrap == "kafka:9092"
        assert settings.s3_endpoint == "minio:9000" and settings.s3_secure is False
        assert settings.worker_shards >= services_replicas(compose, "worker")


def services_replicas(compose: dict[str, Any], name: str) -> int:
    return int(compose["services"][name].get("deploy", {}).get("replicas", 1))


def test_dependencies_exist_and_are_waited_for_properly(compose):
    services = compose["services"]
    for name, service in services.items():
        for target, rule in (service.get("depends_on") or {}).items():
            assert target in services, (name, target)
            if rule["condition"] == "service_healthy":
                assert "healthcheck" in services[target], (name, target)
            if rule["condition"] == "service_completed_successfully":
                assert services[target].get("restart") == "no", (name, target)


def test_every_long_running_service_has_a_health_check(compose):
    for name, service in compose["services"].items():
        if service.get("restart") == "no":
            continue  # one-shot jobs
        check = service.get("healthcheck")
        assert check and not check.get("disable") and check.get("test"), name
    api_check = " ".join(compose["services"]["api"]["healthcheck"]["test"])
    assert "/readyz" in api_check


def test_dockerfile_is_multi_stage_non_root_and_checks_readiness():
    text = (INFRA / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.MULTILINE)) >= 2
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*/readyz", text, re.MULTILINE)
    sources = re.findall(r"^COPY (?!--from)(\S+)", text, re.MULTILINE)
    assert sources
    ignore = (INFRA / "Dockerfile.dockerignore").read_text()
    for source in sources:
        assert (ROOT / source).exists(), source
        assert f"!{source.rstrip('/')}" in ignore, source  # really sent to the build


def test_deploy_docs_cover_the_compose_file():
    docs = (ROOT / "docs" / "deploy.md").read_text()
    assert "infra/docker-compose.yml" in docs and "infra/.env.example" in docs
    for name in ("postgres", "kafka", "minio", "api", "worker", "projections", "relay",
                 "consumers", "ORTHOVAULT_WORKER_SHARDS"):
        assert f"`{name}`" in docs, name


@pytest.mark.parametrize(("url", "healthy"), [("from_settings", True),
                                              ("postgresql://nobody@127.0.0.1:1/none", False)])
def test_job_health_check_reports_the_database(shared_settings, monkeypatch, url, healthy):
    env = {"ORTHOVAULT_DATABASE_URL": shared_settings.database_url if url == "from_settings"
           else url}
    result = subprocess.run([sys.executable, "-m", "api.healthcheck", "jobs"], cwd=ROOT,
                            env={"PATH": "/usr/bin:/bin", **env}, capture_output=True,
                            text=True, timeout=60, check=False)
    assert (result.returncode == 0) is healthy, result.stderr
    if not healthy:
        assert "database" in result.stderr


def test_api_health_check_follows_readyz():
    import http.server
    import threading

    from api.healthcheck import check_http

    class Readiness(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/readyz" else 503)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Readiness)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert check_http(f"{base}/readyz") is None
        assert check_http(f"{base}/not-ready") is not None  # 503 from /readyz: unhealthy
    finally:
        server.shutdown()
        server.server_close()
    assert check_http(base + "/readyz") is not None  # nothing listens: unhealthy
