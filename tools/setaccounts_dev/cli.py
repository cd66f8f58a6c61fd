"""`setaccounts`: developer commands for the stack `make run` started in this checkout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from setaccounts_dev.devkeys import JWKS_FILE, claims_for, ensure_dev_key, load_dev_key

ROOT = Path(__file__).resolve().parents[2]

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False)


@app.callback()
def main() -> None:
    """Developer commands for the local stack (`make run`)."""


@app.command("dev-key")
def dev_key(
    key_dir: Annotated[
        Path, typer.Option("--key-dir", envvar="SETACCOUNTS_DEV_DIR", help="Where to keep the key.")
    ] = ROOT / ".run",
) -> None:
    """Create the checkout's development key (`make run` does it too) and print where its JWKS is."""
    key = ensure_dev_key(key_dir)
    typer.echo(f"{key_dir / JWKS_FILE} (kid {key.kid})")


@app.command()
def token(
    subject: Annotated[str, typer.Option("--subject", help="The token's sub (who is calling).")],
    admin: Annotated[bool, typer.Option("--admin", help="Grant the admin role.")] = False,
    account: Annotated[
        list[str] | None, typer.Option("--account", help="An account the token is scoped to (repeatable).")
    ] = None,
    scope: Annotated[
        list[str] | None,
        typer.Option("--scope", help="A SMART scope (repeatable); default system/*.cruds or user/*.cruds."),
    ] = None,
    ttl: Annotated[int, typer.Option("--ttl", min=1, help="Seconds the token stays valid.")] = 3600,
    key_dir: Annotated[
        Path, typer.Option("--key-dir", envvar="SETACCOUNTS_DEV_DIR", help="Where `make run` keeps its key.")
    ] = ROOT / ".run",
) -> None:
    """Print a bearer token signed with this checkout's development key (valid for `make run` only)."""
    claims = claims_for(subject, admin=admin, accounts=account or (), scopes=scope or (), ttl_seconds=ttl)
    typer.echo(load_dev_key(key_dir).sign(claims))
