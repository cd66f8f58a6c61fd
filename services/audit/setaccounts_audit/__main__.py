"""`python -m setaccounts_audit`: the same CLI as `setaccounts-audit`."""

from setaccounts_audit.cli import app

if __name__ == "__main__":
    app()
