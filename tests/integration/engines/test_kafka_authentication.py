"""The embedded Apache Kafka takes authenticated clients only: without credentials, or with a wrong
password, nothing reaches the commands topic; the services' credentials work."""

from __future__ import annotations

import asyncio
import secrets
import uuid
from pathlib import Path

import pytest
from aiokafka.errors import KafkaConnectionError, TopicAuthorizationFailedError
from pydantic import SecretStr

from setaccounts.events import SetAccountsCommand
from setaccounts.settings import Settings
from setaccounts.topics import create_topics
from setaccounts_dev.engines import PLAINTEXT, Engines, KafkaSecurity
from setaccounts_dev.engines.apache_kafka import apache_kafka_unavailable, start_apache_kafka
from tests.helpers.publishing import send_command
from tests.helpers.topics import read_topic

pytestmark = pytest.mark.integration


@pytest.fixture
def sasl(servers: Engines) -> None:
    if not servers.kafka_security.protocol.startswith("SASL_"):
        pytest.skip(f"the broker in use does not authenticate clients ({servers.description})")


def command(target: str) -> SetAccountsCommand:
    return SetAccountsCommand(command_id=str(uuid.uuid4()), target=target, accounts=["Organization/a"])


async def only_the_authenticated_command_arrives(settings: Settings, refused: Settings) -> None:
    with pytest.raises(KafkaConnectionError):
        await send_command(refused, command("Patient/intruder"))
    await send_command(settings, command("Patient/p1"))  # the services' credentials: accepted

    records = await read_topic(settings, settings.topics.commands)
    assert [record.key for record in records] == [b"Patient/p1"]


async def test_a_client_without_credentials_cannot_publish_a_command(settings: Settings, sasl: None) -> None:
    await only_the_authenticated_command_arrives(settings, settings.model_copy(update=PLAINTEXT.settings()))


async def test_a_client_with_a_wrong_password_cannot_publish_a_command(
    settings: Settings, sasl: None
) -> None:
    wrong = settings.model_copy(update={"kafka_sasl_password": SecretStr("not-the-password")})
    await only_the_authenticated_command_arrives(settings, wrong)


def test_the_password_is_in_no_description_of_the_engines(servers: Engines, sasl: None) -> None:
    password = servers.kafka_security.password
    assert len(password) >= 20  # generated: secrets.token_urlsafe
    assert password not in repr(servers) + servers.description
    assert servers.as_env()["SETACCOUNTS_KAFKA_SASL_PASSWORD"] == password  # what the services get


@pytest.mark.skipif(apache_kafka_unavailable() is not None, reason="no embedded Apache Kafka here")
async def test_an_authenticated_user_without_acls_cannot_publish_a_command(
    settings: Settings, tmp_path: Path
) -> None:
    """The embedded broker authorises too: only its super user (the services') may write."""
    outsider = KafkaSecurity("SASL_PLAINTEXT", "SCRAM-SHA-512", "outsider", secrets.token_urlsafe(18))
    proc, bootstrap, services = await asyncio.to_thread(
        start_apache_kafka, tmp_path / "kafka", None, [outsider]
    )
    try:
        own = settings.model_copy(update={"kafka_bootstrap_servers": bootstrap, **services.settings()})
        await create_topics(own)
        denied = own.model_copy(update=outsider.settings(), deep=True)
        with pytest.raises(TopicAuthorizationFailedError):
            await asyncio.wait_for(send_command(denied, command("Patient/intruder")), 60)
        await send_command(own, command("Patient/p1"))

        records = await read_topic(own, own.topics.commands)
        assert [record.key for record in records] == [b"Patient/p1"]
    finally:
        await asyncio.to_thread(proc.stop)
