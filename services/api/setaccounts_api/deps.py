"""Typed dependencies: routes ask for what they need; tests override these instead of patching modules."""

from __future__ import annotations

from typing import Annotated, Any

from aiokafka import AIOKafkaProducer
from fastapi import Depends, Request
from pymongo.asynchronous.database import AsyncDatabase

from setaccounts.recovery import TopicRecovery
from setaccounts.settings import Settings
from setaccounts_api.stores import Stores


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_db(request: Request) -> AsyncDatabase[dict[str, Any]]:
    db: AsyncDatabase[dict[str, Any]] = request.app.state.db
    return db


def get_producer(request: Request) -> AIOKafkaProducer:
    producer: AIOKafkaProducer = request.app.state.producer
    return producer


def get_recovery(request: Request) -> TopicRecovery:
    recovery: TopicRecovery = request.app.state.recovery
    return recovery


def get_stores(request: Request) -> Stores:
    stores: Stores = request.app.state.stores
    return stores


SettingsDep = Annotated[Settings, Depends(get_settings)]
DbDep = Annotated[AsyncDatabase[dict[str, Any]], Depends(get_db)]
ProducerDep = Annotated[AIOKafkaProducer, Depends(get_producer)]
RecoveryDep = Annotated[TopicRecovery, Depends(get_recovery)]
StoresDep = Annotated[Stores, Depends(get_stores)]
