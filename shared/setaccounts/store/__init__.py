"""The resource store: how FHIR resources are kept in MongoDB and how every write computes `meta`."""
