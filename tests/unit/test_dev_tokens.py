"""`setaccounts token` prints tokens that the API, configured the way `make run` configures it, accepts."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from setaccounts.auth.scopes import Interaction
from setaccounts.auth.tokens import TokenVerifier
from setaccounts.settings import Settings
from setaccounts_dev.cli import app
from setaccounts_dev.devkeys import dev_auth_env


async def test_tokens_of_the_cli_verify_against_the_dev_settings(tmp_path: Path) -> None:
    env = dev_auth_env(tmp_path)  # what make run gives the API
    settings = Settings(**{k.removeprefix("SETACCOUNTS_").lower(): v for k, v in env.items()})
    verifier = TokenVerifier(settings)
    runner = CliRunner()

    admin = runner.invoke(app, ["token", "--subject", "alice", "--admin", "--key-dir", str(tmp_path)])
    assert admin.exit_code == 0, admin.output
    principal = await verifier.verify(admin.output.strip())
    assert principal.admin and principal.subject == "alice"

    args = ["token", "--subject", "bob", "--account", "Organization/acme", "--scope", "user/Observation.rs"]
    user = runner.invoke(app, [*args, "--key-dir", str(tmp_path)])
    principal = await verifier.verify(user.output.strip())
    assert not principal.admin and principal.accounts == ("Organization/acme",)
    assert principal.may(Interaction.READ, "Observation") and not principal.may(Interaction.READ, "Patient")
    assert (tmp_path / "dev-signing-key.pem").stat().st_mode & 0o077 == 0  # private key: owner only


def test_without_make_run_there_is_no_key(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["token", "--subject", "x", "--key-dir", str(tmp_path / "none")])
    assert result.exit_code != 0 and "make run" in result.output
