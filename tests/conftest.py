from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from models.serving.inference import ARTIFACT_DIR, Classifier
from models.serving.screening import screen_photo
from models.training.data import Sample, image_path, read_samples
from models.training.pad_ufes import PhoneSample, read_phone_samples
from shared.config import get_settings
from shared.images import UnreadableImage
from shared.labels import PhotoKind, RiskLevel
from tests.auxil.database import migrated_engine
from tests.auxil.services import postgres_database, postgres_server, redis_server

REPO = Path(__file__).resolve().parents[1]
# A test that uses any of these (directly or through other fixtures) starts a server: Redis, PostgreSQL, the
# Bot API sandbox or a whole stack. The others, but those marked ``training`` (TensorFlow runs of a minute or
# more), form the quick tier (`./dev test --quick`).
SERVER_FIXTURES = frozenset({"redis_url", "postgres_admin_url", "sandbox", "stack"})


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        uses_servers = SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ()))
        if uses_servers or item.get_closest_marker("e2e") or item.get_closest_marker("postgres"):
            item.add_marker(pytest.mark.servers)
        # `./dev test` runs the files on several pytest-xdist workers (--dist loadgroup): a file's tests stay on
        # one worker, sharing the servers its module fixtures started, unless the file says that each of its
        # tests starts a stack of its own (SPREAD_OVER_WORKERS = True: the chaos tests, a minute each).
        module = getattr(item, "module", None)
        if module is not None and not getattr(module, "SPREAD_OVER_WORKERS", False):
            item.add_marker(pytest.mark.xdist_group(module.__name__))
    # The longest files first (RUNS_LONG = True in the file): pytest-xdist hands the groups out in this order, and
    # one started last would leave the other workers idle while it runs.
    items.sort(key=lambda item: not getattr(getattr(item, "module", None), "RUNS_LONG", False))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """HAM10000 through the setting; tests that need it skip with the reason when it is absent."""
    configured = get_settings().data_dir
    if configured is None:
        pytest.skip("SKINSENSE_DATA_DIR is not set: HAM10000 data not available")
    if not (configured / "metadata.csv").is_file():
        pytest.skip(f"SKINSENSE_DATA_DIR={configured} has no metadata.csv")
    return configured


@pytest.fixture(scope="session")
def samples(data_dir: Path) -> list[Sample]:
    return read_samples(data_dir)


@pytest.fixture(scope="session")
def phone_data_root(data_dir: Path) -> Path:
    """The folder holding PAD-UFES-20 (pad_ufes/), beside HAM10000; tests that need it skip when absent."""
    root = data_dir.parent
    if not (root / "pad_ufes" / "metadata.csv").is_file():
        pytest.skip(f"no PAD-UFES-20 phone photos at {root / 'pad_ufes'}")
    return root


@pytest.fixture(scope="session")
def phone_samples(phone_data_root: Path) -> list[PhoneSample]:
    return read_phone_samples(phone_data_root)


@pytest.fixture(scope="session")
def imagenet_weights() -> Path:
    configured = get_settings().imagenet_weights
    if configured is None or not configured.is_file():
        pytest.skip("SKINSENSE_IMAGENET_WEIGHTS is not set or missing: ImageNet TFLite weights not available")
    return configured


@pytest.fixture(scope="session")
def classifier() -> Classifier:
    return Classifier(ARTIFACT_DIR)


@pytest.fixture
def tmp_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Isolate SKINSENSE_ settings for one test."""
    for key in list(os.environ):
        if key.startswith("SKINSENSE_"):
            monkeypatch.delenv(key)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The tests' own redis-server on a free port, for the whole session; stopped at its end."""
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """The tests' own throwaway PostgreSQL cluster, started on first use and stopped at the session's end."""
    with postgres_server() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def audit_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A migrated audit database on each backend the product supports: SQLite in the test's folder, then a fresh
    database on the tests' own PostgreSQL server (dropped afterwards)."""
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
        else:
            url = stack.enter_context(postgres_database(request.getfixturevalue("postgres_admin_url")))
        engine = migrated_engine(url)
        stack.callback(engine.dispose)
        yield engine


@pytest.fixture(scope="session")
def phone_photo(phone_data_root: Path, classifier: Classifier) -> Path:
    """A PAD-UFES-20 phone photo the gates take as one (the patient's answers combine with phone photos only);
    chosen by the model itself, not hard-coded."""
    for path in sorted((phone_data_root / "pad_ufes" / "images").glob("*.jpg")):
        try:
            prediction = screen_photo(path.read_bytes(), classifier)
        except UnreadableImage:
            continue
        if prediction.photo_kind == PhotoKind.CLINICAL:
            return path
    pytest.fail("no PAD-UFES-20 photo is taken for a phone photo")


@pytest.fixture(scope="session")
def photos_by_risk(data_dir: Path, classifier: Classifier) -> dict[str, Path]:
    """Validation photos (never trained on) that the shipped model puts at high risk with a melanoma
    alert, and at low risk; chosen by the model itself, not hard-coded."""
    from models.training.validation_data import validation_samples  # training-side code: only where needed

    chosen: dict[str, Path] = {}
    for sample in validation_samples(data_dir, ARTIFACT_DIR):
        path = image_path(data_dir, sample)
        try:
            prediction = screen_photo(path.read_bytes(), classifier)
        except UnreadableImage:
            continue
        if prediction.melanoma_alert and "alert" not in chosen:
            chosen["alert"] = path
        if prediction.risk == RiskLevel.LOW and "low" not in chosen:
            chosen["low"] = path
        if len(chosen) == 2:
            return chosen
    pytest.fail("the validation split has no alert or no low-risk photo")
