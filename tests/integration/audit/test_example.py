"""examples/publish_command.py works as documented: publish over Kafka, read the answer from results."""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.kafka import security
from setaccounts.settings import Settings
from setaccounts.store.meta import accounts_of
from tests.helpers.resources import Seed, patient_with_members

pytestmark = [pytest.mark.integration, pytest.mark.slow]
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "publish_command.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("publish_command_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.smoke
async def test_example_publishes_a_command_and_prints_its_result(
    settings: Settings, propagator: None, seed: Seed, db: AsyncDatabase[dict[str, Any]]
) -> None:
    await seed(*patient_with_members("ex1", 4))
    example, out = load_example(), io.StringIO()

    finished = await example.main(
        "Patient/ex1",
        ["Organization/o1", "Organization/o2"],
        propagate=True,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        connection=security(settings),
        topic_prefix=settings.topic_prefix,
        out=out,
    )

    assert (finished.status, finished.resources_updated, finished.resources_changed) == ("completed", 5, 5)
    assert "status=completed resourcesUpdated=5 resourcesChanged=5" in out.getvalue()
    async for doc in db.resources.find({}):
        assert accounts_of(doc["resource"]) == ["Organization/o1", "Organization/o2"]

    again = await example.main(
        "Patient/ex1",
        ["Organization/o1", "Organization/o2"],
        propagate=True,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        connection=security(settings),
        topic_prefix=settings.topic_prefix,
        out=out,
    )
    assert (again.status, again.resources_updated, again.resources_changed) == ("completed", 5, 0)


async def test_example_reports_an_unknown_target_as_an_error(
    settings: Settings, propagator: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    example, out = load_example(), io.StringIO()
    for name, value in settings.to_env().items():  # the broker's security from the environment, as documented
        if name.startswith("SETACCOUNTS_KAFKA_S"):
            monkeypatch.setenv(name, value)

    finished = await example.main(
        "Patient/nobody",
        ["Organization/o1"],
        topic_prefix=settings.topic_prefix,
        bootstrap_servers=settings.kafka_bootstrap_servers,
        out=out,
    )

    assert finished.status == "error"
    assert "does not exist" in str(finished.outcome)
    assert "status=error resourcesUpdated=0 resourcesChanged=0" in out.getvalue()
