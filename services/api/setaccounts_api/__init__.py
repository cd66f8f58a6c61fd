"""HTTP API: the FHIR R4 REST surface, the $set-accounts operation and its job status."""
