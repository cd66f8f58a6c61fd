"""MongoDB credentials travel in `MONGODB_URI`: SecantusDB with `--auth` refuses a client without a login
or with a wrong password, and the services' client (make_client) works with the URI's credentials."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure

from setaccounts.mongo import ensure_indexes, make_client
from setaccounts.settings import Settings
from setaccounts_dev.engines.secantus import MongoUser, create_mongo_user, start_secantus
from tests.helpers.resources import patient_with_members, store_resources

pytestmark = pytest.mark.integration
DATABASE = "fhir"


async def test_a_store_with_auth_takes_the_uri_credentials_and_refuses_other_clients(tmp_path: Path) -> None:
    user = MongoUser("setaccounts", secrets.token_urlsafe(18))
    proc, open_uri = await asyncio.to_thread(start_secantus, tmp_path)
    try:
        await asyncio.to_thread(create_mongo_user, open_uri, user, DATABASE)
    finally:
        await asyncio.to_thread(proc.stop)
    proc, uri = await asyncio.to_thread(start_secantus, tmp_path, user=user)  # same data, now with --auth
    try:
        assert user.password not in repr(user)
        port = uri.rpartition(":")[2].partition("/")[0]
        anonymous = f"mongodb://127.0.0.1:{port}/?directConnection=true"
        wrong = f"mongodb://{user.username}:not-the-password@127.0.0.1:{port}/?directConnection=true"
        assert await refused(anonymous) == 13  # Unauthorized: no login
        assert await refused(wrong) == 18  # AuthenticationFailed

        client = make_client(Settings(mongodb_uri=uri, mongodb_database=DATABASE))
        try:
            db = client[DATABASE]
            await ensure_indexes(db)
            stored = await store_resources(db, *patient_with_members("p1", 2))
            assert await db.resources.count_documents({}) == len(stored) == 3
        finally:
            await client.close()
    finally:
        await asyncio.to_thread(proc.stop)


async def refused(uri: str) -> int | None:
    """The error code the store answers a read of the resources with (None: it answered)."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        await client[DATABASE].resources.find_one()
    except OperationFailure as failure:
        return failure.code
    finally:
        await client.close()
    return None
