// Interop: the whole user lifecycle through openid-client, which validates
// every ID token itself (signature from the JWKS, iss, aud, nonce, exp, iat,
// the RFC 9207 `iss` of the authorization response): authorization code with
// PKCE through the hosted login form, userinfo, a refresh (rotation and a new
// ID token), reuse detection, revocation, introspection and logout.
// Env: ISSUER, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, RESOURCE, EMAIL, PASSWORD.
// Prints one JSON line with what it checked; exits non-zero on any failure.
import { Issuer, generators } from "openid-client";

const { ISSUER, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, RESOURCE, EMAIL, PASSWORD } = process.env;

function check(cond, what) {
  if (!cond) throw new Error(what);
}

const issuer = await Issuer.discover(ISSUER);
check(issuer.metadata.authorization_response_iss_parameter_supported === true, "RFC 9207 advertised");
const client = new issuer.Client({
  client_id: CLIENT_ID,
  client_secret: CLIENT_SECRET,
  redirect_uris: [REDIRECT_URI],
  response_types: ["code"],
  token_endpoint_auth_method: "client_secret_basic",
  id_token_signed_response_alg: "RS256",
});

const verifier = generators.codeVerifier();
const state = generators.state();
const nonce = generators.nonce();
const authUrl = client.authorizationUrl({
  scope: "openid profile email offline_access read:data",
  resource: RESOURCE,
  code_challenge: generators.codeChallenge(verifier),
  code_challenge_method: "S256",
  state,
  nonce,
});

// The browser's part, by hand: follow to the form, keep the cookies, post it.
const jar = new Map();
function keep(resp) {
  for (const line of resp.headers.getSetCookie()) {
    const [pair] = line.split(";");
    const [name, value] = pair.split("=");
    jar.set(name, value);
  }
}
const cookies = () => [...jar].map(([k, v]) => `${k}=${v}`).join("; ");
async function get(url) {
  const resp = await fetch(url, { redirect: "manual", headers: { cookie: cookies() } });
  keep(resp);
  return resp;
}

let resp = await get(authUrl);
check(resp.status === 302, `authorize answered ${resp.status}`);
const formUrl = new URL(resp.headers.get("location"), ISSUER);
resp = await get(formUrl);
check(resp.status === 200, `login page answered ${resp.status}`);
const html = await resp.text();
const hidden = (name) => html.match(new RegExp(`name="${name}" value="([^"]*)"`))[1];
resp = await fetch(new URL("/login", ISSUER), {
  method: "POST",
  redirect: "manual",
  headers: { cookie: cookies(), "content-type": "application/x-www-form-urlencoded" },
  body: new URLSearchParams({ txn: hidden("txn"), csrf: hidden("csrf"), email: EMAIL, password: PASSWORD }),
});
keep(resp);
check(resp.status === 302, `login answered ${resp.status}`);
const callback = resp.headers.get("location");
check(callback.startsWith(REDIRECT_URI), `redirected to ${callback}`);

// openid-client checks state, iss, the code exchange and the ID token.
const params = client.callbackParams(callback);
const tokens = await client.callback(REDIRECT_URI, params, { code_verifier: verifier, state, nonce });
const id = tokens.claims();
check(id.email === EMAIL, `email ${id.email}`);
check(typeof id.org_id === "string", "org_id in the ID token");
check(tokens.refresh_token, "a refresh token");

const info = await client.userinfo(tokens.access_token);
check(info.sub === id.sub && info.email === EMAIL, "userinfo matches the ID token");

// Rotation: a new refresh token and a new ID token for the same sign-in.
const refreshed = await client.refresh(tokens.refresh_token);
check(refreshed.refresh_token && refreshed.refresh_token !== tokens.refresh_token, "rotated");
const id2 = refreshed.claims();
check(id2.sub === id.sub && id2.auth_time === id.auth_time, "same sign-in after refresh");

// Revocation and introspection of an access token.
const before = await client.introspect(refreshed.access_token, "access_token");
check(before.active === true && before.sub === id.sub, "active before revocation");
await client.revoke(refreshed.access_token, "access_token");
const after = await client.introspect(refreshed.access_token, "access_token");
check(after.active === false, "inactive after revocation");

// Reuse of the replaced token revokes the family, its access tokens included.
let reuse = null;
try {
  await client.refresh(tokens.refresh_token);
} catch (e) {
  reuse = e.error;
}
check(reuse === "invalid_grant", `reuse answered ${reuse}`);
let family = null;
try {
  await client.refresh(refreshed.refresh_token);
} catch (e) {
  family = e.error;
}
check(family === "invalid_grant", "the family died with the reuse");
const first = await client.introspect(tokens.access_token, "access_token");
check(first.active === false, "the family's access tokens died with it");

// RP-initiated logout back to the client: the OP asks the user first (a GET
// changes nothing); the confirmation form posts back with its CSRF token.
const logout = client.endSessionUrl({ id_token_hint: refreshed.id_token, post_logout_redirect_uri: REDIRECT_URI, state: "bye" });
resp = await get(logout);
check(resp.status === 200, `logout page answered ${resp.status}`);
const page = await resp.text();
const fields = new URLSearchParams();
for (const [, name, value] of page.matchAll(/<input type="hidden" name="([^"]*)" value="([^"]*)">/g)) {
  fields.append(name, value.replaceAll("&quot;", '"').replaceAll("&#39;", "'").replaceAll("&lt;", "<").replaceAll("&gt;", ">").replaceAll("&amp;", "&"));
}
check(fields.get("csrf") && fields.get("id_token_hint") === refreshed.id_token, "the confirmation carries the request");
resp = await fetch(new URL("/logout", ISSUER), {
  method: "POST",
  redirect: "manual",
  headers: { cookie: cookies(), "content-type": "application/x-www-form-urlencoded" },
  body: fields,
});
keep(resp);
check(resp.status === 302 && resp.headers.get("location") === `${REDIRECT_URI}?state=bye`, `logout answered ${resp.status}`);
// Signed out: the next authorization asks for the password again.
resp = await get(client.authorizationUrl({ scope: "openid", code_challenge: generators.codeChallenge(verifier), code_challenge_method: "S256", state }));
check(resp.status === 302 && resp.headers.get("location").startsWith("/login"), "the session ended");

console.log(JSON.stringify({
  ok: true,
  sub: id.sub,
  org_id: id.org_id,
  id_alg: JSON.parse(Buffer.from(tokens.id_token.split(".")[0], "base64url")).alg,
  scope: refreshed.scope,
}));
