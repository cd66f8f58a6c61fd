"""Shared library of the $set-accounts services: event contracts, settings, FHIR rules, store, engines."""
