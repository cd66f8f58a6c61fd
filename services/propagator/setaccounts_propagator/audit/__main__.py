"""`python -m setaccounts_propagator.audit`: the same CLI as `setaccounts-audit`."""

from setaccounts_propagator.audit.cli import app

if __name__ == "__main__":
    app()
