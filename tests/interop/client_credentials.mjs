// Interop: discover the built-in issuer with openid-client, get a
// client_credentials token, and verify it with jose against the published JWKS.
// Env: ISSUER (the issuer URL), CLIENT_ID, CLIENT_SECRET, RESOURCE.
// Prints one JSON line with what it checked; exits non-zero on any failure.
import { Issuer } from "openid-client";
import { createRemoteJWKSet, jwtVerify, decodeProtectedHeader } from "jose";

const { ISSUER, CLIENT_ID, CLIENT_SECRET, RESOURCE } = process.env;

const issuer = await Issuer.discover(ISSUER);
if (issuer.metadata.issuer !== ISSUER) throw new Error(`discovered issuer ${issuer.metadata.issuer}`);

const client = new issuer.Client({
  client_id: CLIENT_ID,
  client_secret: CLIENT_SECRET,
  token_endpoint_auth_method: "client_secret_basic",
});
const tokens = await client.grant({ grant_type: "client_credentials", resource: RESOURCE, scope: "read:data" });
if (tokens.token_type.toLowerCase() !== "bearer") throw new Error(`token_type ${tokens.token_type}`);

const jwks = createRemoteJWKSet(new URL(issuer.metadata.jwks_uri));
const { payload, protectedHeader } = await jwtVerify(tokens.access_token, jwks, {
  issuer: ISSUER,
  audience: RESOURCE,
  typ: "at+jwt",
});
if (payload.client_id !== CLIENT_ID) throw new Error(`client_id ${payload.client_id}`);

// A token signed by someone else must not verify.
const [h, p] = tokens.access_token.split(".");
const forged = `${h}.${Buffer.from(JSON.stringify({ ...payload, scope: "admin" })).toString("base64url")}.${tokens.access_token.split(".")[2]}`;
let forgedVerified = true;
try {
  await jwtVerify(forged, jwks, { issuer: ISSUER, audience: RESOURCE });
} catch {
  forgedVerified = false;
}
if (forgedVerified) throw new Error("a tampered token verified");

console.log(JSON.stringify({
  ok: true,
  alg: protectedHeader.alg,
  kid: decodeProtectedHeader(tokens.access_token).kid,
  scope: payload.scope,
  sub: payload.sub,
}));
