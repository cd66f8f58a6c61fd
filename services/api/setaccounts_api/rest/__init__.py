"""The FHIR REST interactions behind the routes: pure decisions, their guarded writes, search and Bundles."""
