// A relying party nobody here wrote the protocol code of: openid-client
// discovers portcullis, starts the authorization code flow with PKCE (S256),
// state and nonce, and on the callback checks the RFC 9207 `iss`, exchanges
// the code and validates the ID token itself (signature from the JWKS, iss,
// aud, nonce, exp, iat); it then calls userinfo with the access token. It
// serves on 127.0.0.1 and answers any Host, so the same server is also the
// "other site" of the CSRF and framing tests (reached as http://localhost:…).
//
// Routes:
//   GET /start?prompt=&organization=&login_hint=  → 302 to /oauth/authorize
//   GET /callback                                 → the outcome, as JSON in <pre id="result">
//   GET /logout                                   → 302 to end_session_endpoint with id_token_hint
//   GET /logged-out?state=                        → "Logged out" (the state checked)
//   GET /forge?action=&field=value…               → a page that auto-submits a form to `action`
//   GET /frame?src=                               → a page that frames `src`
import http from "node:http";
import { Issuer, generators } from "openid-client";

const escape = (s) =>
  String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function page(res, status, title, body) {
  res.writeHead(status, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
  res.end(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escape(title)}</title></head><body>${body}</body></html>`);
}

/// The JSON payload of a JWT, unverified (the access token is checked by
/// userinfo, the ID token by openid-client).
function payload(jwt) {
  return JSON.parse(Buffer.from(jwt.split(".")[1], "base64url").toString());
}

/**
 * Starts the relying party on 127.0.0.1:`port`. `outcomes` lists what each
 * callback ended with, in order; `lastIdToken` is the ID token of the latest
 * successful one.
 */
export async function startRp({ issuerUrl, clientId, clientSecret, port }) {
  const base = `http://127.0.0.1:${port}`;
  const issuer = await Issuer.discover(issuerUrl);
  const client = new issuer.Client({
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [`${base}/callback`],
    post_logout_redirect_uris: [`${base}/logged-out`],
    response_types: ["code"],
    token_endpoint_auth_method: "client_secret_basic",
    id_token_signed_response_alg: "RS256",
  });
  const pending = new Map();
  const rp = { base, issuer, outcomes: [], lastIdToken: null, logoutState: null };

  async function route(req, res) {
    const url = new URL(req.url, base);
    switch (url.pathname) {
      case "/start": {
        const verifier = generators.codeVerifier();
        const state = generators.state();
        const nonce = generators.nonce();
        pending.set(state, { verifier, nonce });
        const extra = {};
        for (const name of ["prompt", "organization", "login_hint"]) {
          if (url.searchParams.has(name)) extra[name] = url.searchParams.get(name);
        }
        const location = client.authorizationUrl({
          scope: "openid profile email read:data",
          resource: "https://api.example.test",
          code_challenge: generators.codeChallenge(verifier),
          code_challenge_method: "S256",
          state,
          nonce,
          ...extra,
        });
        res.writeHead(302, { location });
        return res.end();
      }
      case "/callback": {
        const params = client.callbackParams(req);
        const flow = pending.get(params.state);
        pending.delete(params.state);
        if (!flow) throw new Error("a callback for no flow this client started");
        let outcome;
        try {
          const tokens = await client.callback(`${base}/callback`, params, {
            code_verifier: flow.verifier,
            state: params.state,
            nonce: flow.nonce,
          });
          const userinfo = await client.userinfo(tokens.access_token);
          rp.lastIdToken = tokens.id_token;
          outcome = { ok: true, id: tokens.claims(), access: payload(tokens.access_token), userinfo };
        } catch (e) {
          // An OAuth error sent back to the client (login_required …), or a
          // check openid-client refused: the test reads which.
          outcome = { ok: false, error: e.error ?? e.name, description: e.error_description ?? e.message };
        }
        rp.outcomes.push(outcome);
        return page(res, 200, outcome.ok ? "Signed in" : "Not signed in",
          `<h1>${outcome.ok ? "Signed in" : "Not signed in"}</h1><pre id="result">${escape(JSON.stringify(outcome))}</pre>`);
      }
      case "/logout": {
        rp.logoutState = generators.state();
        const location = client.endSessionUrl({
          id_token_hint: rp.lastIdToken,
          post_logout_redirect_uri: `${base}/logged-out`,
          state: rp.logoutState,
        });
        res.writeHead(302, { location });
        return res.end();
      }
      case "/logged-out": {
        const ok = url.searchParams.get("state") === rp.logoutState;
        return page(res, ok ? 200 : 400, "Logged out", `<h1>${ok ? "Logged out" : "Wrong state"}</h1>`);
      }
      case "/forge": {
        // Another site's page: a form aimed at `action` with the given
        // fields, submitted as soon as the page loads.
        const fields = [...url.searchParams]
          .filter(([name]) => name !== "action")
          .map(([name, value]) => `<input type="hidden" name="${escape(name)}" value="${escape(value)}">`)
          .join("");
        return page(res, 200, "Win a prize",
          `<form id="f" method="post" action="${escape(url.searchParams.get("action"))}">${fields}</form>` +
          `<script>document.getElementById("f").submit()</script>`);
      }
      case "/frame":
        return page(res, 200, "Framed", `<iframe name="victim" src="${escape(url.searchParams.get("src"))}"></iframe>`);
      default:
        return page(res, 404, "Not found", "<h1>Not found</h1>");
    }
  }

  const server = http.createServer((req, res) => {
    route(req, res).catch((e) => {
      res.writeHead(500, { "content-type": "text/plain" });
      res.end(String(e?.stack ?? e));
    });
  });
  await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", resolve);
  });
  rp.close = () => new Promise((resolve) => server.close(resolve));
  return rp;
}
