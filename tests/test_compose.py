"""compose.yaml: PostgreSQL, three Tally replicas and nginx in front, checked by `docker-compose config` (Docker
has no engine here to run it; Debian's docker-compose validates and resolves the file offline)."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[1]
REPLICAS = ("tally-1", "tally-2", "tally-3")


def _target(volume) -> str:
    if isinstance(volume, dict):
        return str(volume["target"])
    parts = volume.split(":")
    return parts[1] if len(parts) >= 2 else parts[0]


def _source(volume) -> str | None:
    if isinstance(volume, dict):
        return volume.get("source")
    parts = volume.split(":")
    return parts[0] if len(parts) >= 2 else None


def _config(env_file: Path) -> subprocess.CompletedProcess:
    command = shutil.which("docker-compose")
    if command is None:
        if os.environ.get("TALLY_TEST_REQUIRE_COMPOSE"):
            pytest.fail("docker-compose is not installed (apt-get install docker-compose)")
        pytest.skip("docker-compose is not installed")
    args = [command, "--project-directory", str(ROOT), "-f", str(ROOT / "compose.yaml"), "--env-file", str(env_file)]
    return subprocess.run([*args, "config"], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if not k.startswith("TALLY_")})


def test_compose_runs_three_replicas_behind_nginx_on_one_postgres(tmp_path):
    env_file = tmp_path / "tally.env"
    env_file.write_text("TALLY_POSTGRES_PASSWORD=db-secret\nTALLY_SECRET_KEY=cookie-secret\n")
    done = _config(env_file)
    assert done.returncode == 0, done.stderr
    services = yaml.safe_load(done.stdout)["services"]
    assert set(services) == {"postgres", "nginx", *REPLICAS}
    for name in REPLICAS:
        environment = services[name]["environment"]
        assert environment["TALLY_DATABASE_URL"] == "postgresql://tally:db-secret@postgres:5432/tally"
        assert environment["TALLY_SECRET_KEY"] == "cookie-secret"  # one secret: a login works on every replica
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert {"/data", environment["TALLY_EXPORTS_DIR"]} <= {_target(v) for v in services[name]["volumes"]}
        assert "ports" not in services[name]  # reached through the load balancer only
    for name in REPLICAS:  # one named volume, the same for every replica
        assert "exports" in {_source(v) for v in services[name]["volumes"]}, services[name]["volumes"]
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "db-secret"
    nginx = services["nginx"]
    assert nginx["image"].startswith("nginx:")
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    assert set(re.findall(r"server (tally-\d):8000", conf)) == set(REPLICAS)
    assert (ROOT / "Dockerfile").exists()


def test_compose_refuses_to_start_without_its_secrets(tmp_path):
    empty = tmp_path / "empty.env"
    empty.write_text("")
    done = _config(empty)
    assert done.returncode != 0
    assert "TALLY_POSTGRES_PASSWORD" in done.stderr or "TALLY_SECRET_KEY" in done.stderr
    example = (ROOT / "deploy" / "tally.env.example").read_text()
    assert "TALLY_POSTGRES_PASSWORD=" in example and "TALLY_SECRET_KEY=" in example
