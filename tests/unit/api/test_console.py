"""The jobs console as the API serves it (no engines: these routes touch no store): the page with its own
Content-Security-Policy, its local assets, its configuration, and the development sign-in, which exists only
when `make run`'s key is configured and mints tokens the API accepts."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from setaccounts.auth.scopes import Interaction
from setaccounts.auth.tokens import TokenVerifier
from setaccounts.settings import Settings
from setaccounts_api.app import create_app
from setaccounts_dev.devkeys import KEY_FILE, dev_auth_env


def dev_settings(directory: Path, *, dev_sign_in: bool, **more: str) -> Settings:
    env = {k.removeprefix("SETACCOUNTS_").lower(): v for k, v in dev_auth_env(directory).items()}
    if dev_sign_in:
        env["console_dev_key_file"] = str(directory / KEY_FILE)
    return Settings(**env, **more)


def client(app: FastAPI, address: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")


async def test_the_page_and_its_assets_are_served_locally_under_a_strict_policy(tmp_path: Path) -> None:
    async with client(create_app(dev_settings(tmp_path, dev_sign_in=False))) as http:
        moved = await http.get("/console")
        page = await http.get("/console/")
        script, auth, style = [
            await http.get(f"/console/assets/{name}") for name in ("console.js", "auth.js", "console.css")
        ]
    assert moved.status_code == 308 and moved.headers["location"] == "/console/"
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert page.headers["x-frame-options"] == "DENY"
    assert 'src="assets/console.js"' in page.text and "http" not in page.text.split("<body>")[0]
    assert script.status_code == auth.status_code == style.status_code == 200
    assert "javascript" in script.headers["content-type"] and "sessionStorage" in auth.text


async def test_without_the_dev_key_there_is_no_dev_sign_in(tmp_path: Path) -> None:
    async with client(create_app(dev_settings(tmp_path, dev_sign_in=False))) as http:
        config = (await http.get("/console/config.json")).json()
        minted = await http.post("/console/dev-token", json={"subject": "mallory", "admin": True})
    assert config == {"oidc": None, "dev_sign_in": False, "trace_url": None}
    assert minted.status_code in (404, 405)
    assert Settings.model_fields["console_dev_key_file"].default == ""  # off unless configured


async def test_the_dev_sign_in_mints_short_tokens_the_api_accepts(tmp_path: Path) -> None:
    settings = dev_settings(tmp_path, dev_sign_in=True)
    verifier = TokenVerifier(settings)
    async with client(create_app(settings)) as http:
        assert (await http.get("/console/config.json")).json()["dev_sign_in"] is True
        admin = await http.post("/console/dev-token", json={"subject": "alice", "admin": True})
        user = await http.post(
            "/console/dev-token", json={"subject": "bob", "accounts": ["Organization/acme"]}
        )
        junk = await http.post("/console/dev-token", json={"subject": "bob", "accounts": ["not a ref"]})
    assert admin.status_code == 200 and admin.json()["expires_in"] <= 900
    principal = await verifier.verify(admin.json()["access_token"])
    assert principal.admin and principal.subject == "alice"
    bob = await verifier.verify(user.json()["access_token"])
    assert not bob.admin and bob.accounts == ("Organization/acme",)
    assert bob.may(Interaction.READ, "Observation")
    assert junk.status_code == 400


async def test_the_dev_sign_in_follows_the_configured_claim_names(tmp_path: Path) -> None:
    settings = dev_settings(
        tmp_path,
        dev_sign_in=True,
        auth_admin_claim="realm_access.roles",
        auth_admin_value="fhir-admin",
        auth_accounts_claim="fhir.accounts",
    )
    async with client(create_app(settings)) as http:
        minted = await http.post(
            "/console/dev-token", json={"subject": "carol", "admin": True, "accounts": ["Organization/x"]}
        )
    principal = await TokenVerifier(settings).verify(minted.json()["access_token"])
    assert principal.admin and principal.accounts == ("Organization/x",)


async def test_the_dev_sign_in_answers_loopback_callers_only(tmp_path: Path) -> None:
    async with client(create_app(dev_settings(tmp_path, dev_sign_in=True)), "192.0.2.7") as http:
        minted = await http.post("/console/dev-token", json={"subject": "alice", "admin": True})
    assert minted.status_code == 403 and "access_token" not in minted.text


def test_a_dev_key_file_that_is_not_a_key_stops_the_api(tmp_path: Path) -> None:
    (tmp_path / "junk.pem").write_text("not a key")
    settings = dev_settings(tmp_path, dev_sign_in=False, console_dev_key_file=str(tmp_path / "junk.pem"))
    with pytest.raises(ValueError, match="SETACCOUNTS_CONSOLE_DEV_KEY_FILE"):
        create_app(settings)


async def test_with_an_issuer_and_a_client_id_the_page_signs_in_there(tmp_path: Path) -> None:
    settings = Settings(
        auth_issuer="https://sso.example.org/realms/clinic",
        auth_jwks_file=dev_auth_env(tmp_path)["SETACCOUNTS_AUTH_JWKS_FILE"],
        auth_audience="fhir-set-accounts",
        console_client_id="jobs-console",
        console_scope="openid fhir",
        console_trace_url="https://traces.example.org/trace/{trace_id}",
    )
    async with client(create_app(settings)) as http:
        config = (await http.get("/console/config.json")).json()
        page = await http.get("/console/")
    assert config == {
        "oidc": {
            "issuer": "https://sso.example.org/realms/clinic",
            "client_id": "jobs-console",
            "scope": "openid fhir",
        },
        "dev_sign_in": False,
        "trace_url": "https://traces.example.org/trace/{trace_id}",
    }
    assert "connect-src 'self' https://sso.example.org;" in page.headers["content-security-policy"]


def test_a_trace_link_needs_a_url_with_the_trace_id() -> None:
    with pytest.raises(ValueError, match="trace_id"):
        Settings(console_trace_url="https://traces.example.org/")
