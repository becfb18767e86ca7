"""The deployment files (docker/, docs/deployment.md) hang together.

Compose parses; every operating room's service runs the image with a source and a token of its own,
publishes no port and sits behind the proxy, which routes to it, and Prometheus scrapes it by name;
both Dockerfiles keep the non-root user, the health check and the service as entrypoint; the build
context (.dockerignore) holds what they copy. Building and running the images is `make image-test`
(root and podman: not CI).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOCKERFILES = [DOCKER / "Dockerfile", DOCKER / "Dockerfile.gpu"]


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def rooms(compose) -> dict[str, dict]:
    return {name: s for name, s in compose["services"].items() if "SURGIFUSE_SOURCE" in s.get("environment", {})}


def test_each_room_runs_the_image_with_its_own_required_token_and_no_published_port(compose):
    found = rooms(compose)
    assert len(found) >= 2, "compose.yaml shows several operating rooms"
    tokens = set()
    for name, service in found.items():
        assert service["image"].startswith("${SURGIFUSE_IMAGE:-"), name
        token = service["environment"]["SURGIFUSE_TOKEN"]
        assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", token), f"{name}: the token must be required, got {token}"
        tokens.add(token)
        assert "ports" not in service, f"{name} must be reachable through the proxy only"
        assert service["read_only"] is True and "backend" in service["networks"]
    assert len(tokens) == len(found), "each room has a token of its own"


def test_the_proxy_routes_each_room_and_prometheus_scrapes_each_by_name(compose):
    names = set(rooms(compose))
    caddyfile = (DOCKER / "Caddyfile").read_text()
    assert set(re.findall(r"reverse_proxy (\w+):8000", caddyfile)) == names
    assert "tls /etc/caddy/tls/" in caddyfile
    scrape = yaml.safe_load((DOCKER / "prometheus.yml").read_text())["scrape_configs"]
    targets = {t for job in scrape for group in job["static_configs"] for t in group["targets"]}
    assert targets == {f"{name}:8000" for name in names}
    assert {"proxy", "prometheus"} <= set(compose["services"])


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_the_image_runs_the_service_as_a_user_with_a_health_check(dockerfile):
    text = dockerfile.read_text()
    runtime = text[text.rindex("\nFROM "):]  # the last stage is the image
    assert re.search(r"^USER 10001", runtime, re.MULTILINE)
    assert re.search(r"^HEALTHCHECK .*\n?.*/healthz", runtime, re.MULTILINE)
    assert 'ENTRYPOINT ["surgifuse", "serve"]' in runtime
    assert "SURGIFUSE_HOST=0.0.0.0" in runtime
    assert not re.search(r"\b(g\+\+|cmake|-dev)\b", runtime), "no compiler in the runtime stage"
    assert "--constraint constraints.txt" in text


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_the_build_context_holds_what_the_dockerfile_copies(dockerfile):
    kept = [line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines() if line.startswith("!")]
    copied = [w for line in dockerfile.read_text().splitlines() if line.startswith("COPY ") and "--from" not in line
              for w in line.split()[1:-1]]
    assert copied
    for path in copied:
        assert any(path == k or path.startswith(k + "/") for k in kept), f"{path} is left out by .dockerignore"
        assert (ROOT / path).exists(), path
