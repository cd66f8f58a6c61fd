"""FHIR R4 rules: references, compartments, OperationOutcomes."""
