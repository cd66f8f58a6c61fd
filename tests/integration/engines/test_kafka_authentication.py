"""The embedded Apache Kafka takes authenticated clients only: without credentials, or with a wrong
password, nothing reaches the commands topic; the services' credentials work."""

from __future__ import annotations

import uuid

import pytest
from aiokafka.errors import KafkaConnectionError
from pydantic import SecretStr

from setaccounts.events import SetAccountsCommand
from setaccounts.kafka import read_topic
from setaccounts.settings import Settings
from setaccounts_dev.engines import PLAINTEXT, Engines
from tests.helpers.publishing import send_command

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
