"""Plain helpers the tests import; the conftest files only declare fixtures, which may call these."""
