"""Kafka consumers of $set-accounts: planner (fan-out), applier (apply), aggregator (aggregate)."""
