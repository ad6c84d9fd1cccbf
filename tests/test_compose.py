"""compose.yaml runs Tally on the PostgreSQL service it defines (Docker has no engine here to run it)."""

from pathlib import Path

import yaml

COMPOSE = Path(__file__).parents[1] / "compose.yaml"


def test_compose_wires_tally_to_its_postgres():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert set(services) == {"postgres", "tally"}
    tally = services["tally"]
    url = tally["environment"]["TALLY_DATABASE_URL"]
    assert url.startswith("postgresql://") and "@postgres:5432/" in url
    assert tally["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert tally["ports"] == ["8000:8000"] and tally["build"] == "."
    assert (COMPOSE.parent / "Dockerfile").exists()
