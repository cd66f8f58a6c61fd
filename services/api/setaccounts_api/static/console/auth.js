// Sign-in for the jobs console: authorization code with PKCE (S256, WebCrypto) at the OpenID issuer, or the
// development sign-in of `make run`. The access token lives in sessionStorage (this tab only).

const TOKEN = "setaccounts.console.token";
const PENDING = "setaccounts.console.pkce";

export function redirectUri() {
  return new URL(".", location.href).href.split(/[?#]/)[0];
}

export function currentToken() {
  const saved = JSON.parse(sessionStorage.getItem(TOKEN) || "null");
  if (!saved || saved.expires_at <= Date.now()) {
    sessionStorage.removeItem(TOKEN);
    return null;
  }
  return saved;
}

function keep(accessToken, expiresIn) {
  const seconds = Number(expiresIn) || 300;
  const claims = JSON.parse(atob(accessToken.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
  const saved = { token: accessToken, subject: claims.sub, expires_at: Date.now() + seconds * 1000 };
  sessionStorage.setItem(TOKEN, JSON.stringify(saved));
  return saved;
}

export function signOut() {
  sessionStorage.removeItem(TOKEN);
}

function base64url(bytes) {
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomString(size) {
  return base64url(crypto.getRandomValues(new Uint8Array(size)));
}

async function discovery(issuer) {
  const answer = await fetch(`${issuer.replace(/\/$/, "")}/.well-known/openid-configuration`);
  if (!answer.ok) throw new Error(`the issuer's discovery answered ${answer.status}`);
  return answer.json();
}

export async function startOidc(oidc) {
  if (!crypto.subtle) throw new Error("sign-in needs a secure context (https, or http on localhost)");
  const verifier = randomString(32);
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  const state = randomString(16);
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state }));
  const found = await discovery(oidc.issuer);
  const url = new URL(found.authorization_endpoint);
  const params = {
    response_type: "code",
    client_id: oidc.client_id,
    redirect_uri: redirectUri(),
    scope: oidc.scope,
    state,
    code_challenge: base64url(new Uint8Array(digest)),
    code_challenge_method: "S256",
  };
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
  location.assign(url.href);
}

// Back from the issuer with ?code=…&state=…: exchange the code; false when this is not such a return.
export async function finishOidc(oidc) {
  const params = new URLSearchParams(location.search);
  if (!params.has("code") && !params.has("error")) return false;
  const pending = JSON.parse(sessionStorage.getItem(PENDING) || "null");
  sessionStorage.removeItem(PENDING);
  history.replaceState(null, "", redirectUri());
  if (params.has("error")) throw new Error(`sign-in refused: ${params.get("error_description") || params.get("error")}`);
  if (!oidc || !pending || params.get("state") !== pending.state) throw new Error("sign-in answer does not match this tab's request");
  const found = await discovery(oidc.issuer);
  const body = new URLSearchParams({
    grant_type: "authorization_code",
    code: params.get("code"),
    redirect_uri: redirectUri(),
    client_id: oidc.client_id,
    code_verifier: pending.verifier,
  });
  const answer = await fetch(found.token_endpoint, { method: "POST", body });
  const tokens = await answer.json();
  if (!answer.ok || !tokens.access_token) throw new Error(`the token endpoint answered ${answer.status}`);
  keep(tokens.access_token, tokens.expires_in);
  return true;
}

export async function devSignIn(subject, admin, accounts) {
  const answer = await fetch("dev-token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ subject, admin, accounts }),
  });
  const body = await answer.json();
  if (!answer.ok) throw new Error(body.issue?.[0]?.diagnostics || `sign-in answered ${answer.status}`);
  return keep(body.access_token, body.expires_in);
}
