"""docker-compose.yml has the stack's shape (no Docker engine runs here, so its structure is checked)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "docker-compose.yml").read_text()))


LONG_RUNNING = {"redis", "postgres", "worker", "beat", "bot", "flower", "prometheus", "grafana"}


def test_all_services_are_there_with_healthchecks() -> None:
    services = compose()["services"]
    assert set(services) == LONG_RUNNING | {"migrate"}
    for name, service in services.items():
        if name in LONG_RUNNING:
            assert "healthcheck" in service and service["healthcheck"]["test"], name
        assert "image" in service or "build" in service, name


def test_every_long_running_service_is_restarted_when_it_exits() -> None:
    services = compose()["services"]
    for name in LONG_RUNNING:
        assert services[name]["restart"] in ("unless-stopped", "always"), name
    assert services["migrate"]["restart"] == "no", "a failed migration must stop the deployment, not loop"


def test_a_stopped_worker_finishes_its_running_tasks_first() -> None:
    from shared.config import Settings

    grace = compose()["services"]["worker"]["stop_grace_period"]
    assert grace.endswith("s") and int(grace[:-1]) > Settings().task_time_limit_s


def test_bot_and_workers_start_after_the_one_shot_migration() -> None:
    services = compose()["services"]
    assert services["migrate"]["command"] == ["skinsense", "db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("worker", "beat", "bot"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy", name


def test_bot_and_workers_are_healthy_when_their_readiness_endpoint_says_so() -> None:
    from shared.config import Settings

    services, settings = compose()["services"], Settings()
    for name, port in (("worker", settings.worker_metrics_port), ("bot", settings.bot_metrics_port)):
        test = " ".join(services[name]["healthcheck"]["test"])
        assert f"http://127.0.0.1:{port}/health/ready" in test, name
        assert services[name]["environment"]["SKINSENSE_METRICS_ADDRESS"] == "0.0.0.0", name


def test_prometheus_is_optional_and_scrapes_the_workers_and_the_bot() -> None:
    from shared.config import Settings

    prometheus, settings = compose()["services"]["prometheus"], Settings()
    assert prometheus["profiles"] == ["metrics"], "only with --profile metrics"
    assert all(port.startswith("127.0.0.1:") for port in prometheus["ports"])
    (config_mount,) = [v for v in prometheus["volumes"] if v.endswith(":/etc/prometheus/prometheus.yml:ro")]
    config = yaml.safe_load((REPO / config_mount.split(":")[0]).read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for job, service, port in (
        ("skinsense-worker", "worker", settings.worker_metrics_port),
        ("skinsense-bot", "bot", settings.bot_metrics_port),
    ):
        (local,) = jobs[job]["dns_sd_configs"]
        assert local["names"] == [service] and local["port"] == port, "every replica on this host"
        (other_hosts,) = jobs[job]["file_sd_configs"]
        assert all(f.startswith("/etc/prometheus/targets/") for f in other_hosts["files"]), "and on the others"
    assert any(v.endswith(":/etc/prometheus/targets:ro") for v in prometheus["volumes"])


def test_redis_keeps_an_append_only_file_on_a_volume() -> None:
    redis = compose()["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "everysec", "at most a second of queue lost on a crash"
    assert any(v.endswith(":/data") for v in redis["volumes"])
    assert "redis-data" in compose()["volumes"]


APP = ("migrate", "worker", "beat", "bot", "flower")


def test_the_infrastructure_runs_apart_and_every_host_joins_it_by_the_urls_in_env() -> None:
    """Issue 23: `docker compose up worker` on a second host started its own Redis and PostgreSQL (hard-coded
    URLs, depends_on): a split brain. Redis and PostgreSQL are the infra profile, published on the infra host's
    address; every app service takes the deployment's URLs from .env and does not need them on its own host."""
    services = compose()["services"]
    assert any("/var/lib/postgresql/data" in v for v in services["postgres"]["volumes"])
    for name in ("redis", "postgres"):
        assert services[name]["profiles"] == ["infra"], name
        assert all(port.startswith("${INFRA_ADDRESS:-127.0.0.1}:") for port in services[name]["ports"]), name
    for name in APP:
        service = services[name]
        assert "profiles" not in service or service["profiles"] == ["beat"], name
        assert service["env_file"] == ".env", name
        environment = service["environment"]
        assert environment["SKINSENSE_DATABASE_URL"] == "${SKINSENSE_DATABASE_URL:?set SKINSENSE_DATABASE_URL in .env}"
        assert environment["SKINSENSE_REDIS_URL"] == "${SKINSENSE_REDIS_URL:?set SKINSENSE_REDIS_URL in .env}"
        for infra in ("redis", "postgres"):
            dependency = service["depends_on"].get(infra)
            assert dependency is None or dependency["required"] is False, (name, infra)


def test_redis_asks_for_a_password() -> None:
    redis = compose()["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--requirepass") + 1] == "${REDIS_PASSWORD:?set REDIS_PASSWORD in .env}"
    assert redis["environment"]["REDISCLI_AUTH"] == "${REDIS_PASSWORD:?set REDIS_PASSWORD in .env}", "healthcheck"


def test_every_host_runs_one_image_tag() -> None:
    services = compose()["services"]
    images = {services[name]["image"] for name in APP}
    assert len(images) == 1
    (image,) = images
    assert "${SKINSENSE_IMAGE_TAG:?" in image, "no host may fall back to a build of its own under `latest`"


def test_the_webhook_port_is_published_and_listened_on() -> None:
    from shared.config import Settings

    bot = compose()["services"]["bot"]
    assert bot["environment"]["SKINSENSE_WEBHOOK_LISTEN"] == "0.0.0.0"
    assert [port.rsplit(":", 1)[1] for port in bot["ports"]] == [str(Settings().webhook_port)]
    assert all("${SKINSENSE_WEBHOOK_PUBLISH:-127.0.0.1:" in port for port in bot["ports"]), "loopback unless set"


def test_one_beat_with_its_schedule_on_a_volume() -> None:
    beat = compose()["services"]["beat"]
    assert beat["profiles"] == ["beat"], "one beat per deployment: the host with the beat profile"
    schedule = beat["command"][beat["command"].index("--schedule") + 1]
    (volume,) = beat["volumes"]
    name, mount = volume.split(":")
    assert schedule.startswith(mount + "/") and name in compose()["volumes"]
    assert "chown skinsense /var/lib/skinsense" in (REPO / "Dockerfile").read_text(), "writable by the app's user"


def test_workers_scale_and_run_the_worker_command() -> None:
    worker = compose()["services"]["worker"]
    assert worker["deploy"]["replicas"] >= 2
    assert worker["command"] == ["skinsense", "worker"]
    assert compose()["services"]["bot"]["command"] == ["skinsense", "bot"]
    assert compose()["services"]["beat"]["command"][:2] == ["skinsense", "beat"], "the daily retention purge"


def test_flower_needs_auth_and_listens_on_loopback_only() -> None:
    flower = compose()["services"]["flower"]
    assert "FLOWER_BASIC_AUTH" in flower["environment"]
    assert all(port.startswith("127.0.0.1:") for port in flower["ports"])


def test_dockerfile_and_env_example_exist() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "pip install ." in dockerfile
    assert "COPY migrations ./migrations" in dockerfile, "the image runs `skinsense db upgrade`"
    example = (REPO / ".env.example").read_text()
    for name in ("SKINSENSE_TELEGRAM_TOKEN", "SKINSENSE_CHAT_HASH_KEY", "SKINSENSE_DELIVERY_KEY", "POSTGRES_PASSWORD"):
        assert name in example


def test_flower_refuses_an_unset_or_example_password() -> None:
    import pytest
    from pydantic import ValidationError

    from shared.config import Settings

    flower = compose()["services"]["flower"]
    assert flower["command"] == ["skinsense", "flower"], "the command that checks the settings and guards /metrics"
    environment = flower["environment"]
    # compose itself refuses to start while the password is unset or empty (`:?`)
    assert "${SKINSENSE_FLOWER_PASSWORD:?" in environment["SKINSENSE_FLOWER_PASSWORD"]
    assert "${SKINSENSE_FLOWER_PASSWORD:?" in environment["FLOWER_BASIC_AUTH"]
    example = dict(
        line.split("=", 1)
        for line in (REPO / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert example["SKINSENSE_ENVIRONMENT"] == "production"
    assert "FLOWER_BASIC_AUTH" not in example, "no example password to copy"
    filled = {
        **example,
        "SKINSENSE_TELEGRAM_TOKEN": "1:x",
        "SKINSENSE_CHAT_HASH_KEY": "k" * 32,
        "SKINSENSE_DELIVERY_KEY": "bm90LXRoZS1kZXZlbG9wbWVudC1kZWxpdmVyeS1rZXk=",  # a Fernet key (32 bytes)
        "SKINSENSE_DATABASE_URL": "postgresql://skinsense:secret@postgres:5432/skinsense",  # compose sets it
    }
    for password in (example["SKINSENSE_FLOWER_PASSWORD"], "change-me", "skinsense"):
        values = {
            key.removeprefix("SKINSENSE_").lower(): value
            for key, value in filled.items()
            if key.startswith("SKINSENSE_")
        }
        values["flower_password"] = password
        with pytest.raises(ValidationError, match="SKINSENSE_FLOWER_PASSWORD"):
            Settings.model_validate(values)
    values["flower_password"] = "a-real-secret-of-ops"
    assert Settings.model_validate(values).flower_password.get_secret_value() == "a-real-secret-of-ops"


def exported_metric_names() -> set[str]:
    """Every series name the bot and the workers export (shared/metrics.py), as PromQL sees them."""
    from prometheus_client.metrics import MetricWrapperBase

    import shared.metrics as metrics

    names = {"skinsense_queue_depth"}  # read from Redis at scrape time (QueueDepthCollector)
    for value in vars(metrics).values():
        if isinstance(value, MetricWrapperBase):
            base = value._name  # a counter's name without its "_total"
            names |= {base, *(base + suffix for suffix in ("_total", "_bucket", "_sum", "_count", "_created"))}
    return names


def test_grafana_is_optional_read_only_and_its_dashboard_asks_for_metrics_that_exist() -> None:
    import json
    import re

    grafana = compose()["services"]["grafana"]
    assert grafana["profiles"] == ["metrics"] and all(p.startswith("127.0.0.1:") for p in grafana["ports"])
    environment = grafana["environment"]
    assert environment["GF_AUTH_ANONYMOUS_ORG_ROLE"] == "Viewer", "viewers only"
    assert environment["GF_AUTH_DISABLE_LOGIN_FORM"] == "true" and environment["GF_AUTH_BASIC_ENABLED"] == "false"
    mounts = {v.split(":")[1]: REPO / v.split(":")[0] for v in grafana["volumes"] if v.startswith("./")}
    provisioning, dashboards = mounts["/etc/grafana/provisioning"], mounts["/etc/grafana/dashboards"]
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert source["url"] == "http://prometheus:9090"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "skinsense.yml").read_text())["providers"]
    assert provider["options"]["path"] == "/etc/grafana/dashboards"

    dashboard = json.loads((dashboards / "skinsense.json").read_text())
    scraped_jobs = {
        job["job_name"] for job in yaml.safe_load((REPO / "ops" / "prometheus.yml").read_text())["scrape_configs"]
    }
    exported = exported_metric_names()
    asked: set[str] = set()
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        for target in panel["targets"]:
            expression = target["expr"]
            asked |= set(re.findall(r"\bskinsense_[a-z_]+\b", expression))
            for job_pattern in re.findall(r'job=~"([^"]+)"', expression):
                assert all(re.fullmatch(job_pattern, job) for job in scraped_jobs), expression
    assert asked <= exported, f"not exported by shared/metrics.py: {sorted(asked - exported)}"
    families = {name.removesuffix("_bucket").removesuffix("_total") for name in asked}
    assert {"skinsense_jobs", "skinsense_photo_to_reply_seconds", "skinsense_queue_depth"} <= families
