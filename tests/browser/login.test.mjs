// The hosted login page in a real browser: Debian's Chromium, driven by
// Playwright, through the authorization code flow with PKCE of an
// openid-client relying party (rp.mjs) against the real portcullis binary
// that run.sh started and seeded. Each test has a browser context of its
// own (its own cookies). Every portcullis page the browser shows is checked
// for its headers (strict CSP, no framing), labelled fields, its stylesheet
// admitted by the CSP, no console error, and no request to another origin.
//
// Env: SEED (the JSON file run.sh wrote), CHROMIUM (default /usr/bin/chromium).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { chromium } from "playwright-core";
import { startRp } from "./rp.mjs";

const seed = JSON.parse(readFileSync(process.env.SEED, "utf8"));
const ISSUER = seed.issuer;
const { alice, bob, carol, mallory } = seed.users;
const { acme, beta } = seed.orgs;

let browser;
let rp;

before(async () => {
  rp = await startRp({
    issuerUrl: ISSUER,
    clientId: seed.client_id,
    clientSecret: seed.client_secret,
    port: seed.rp_port,
  });
  browser = await chromium.launch({ executablePath: process.env.CHROMIUM || "/usr/bin/chromium" });
});

after(async () => {
  await browser?.close();
  await rp?.close();
});

// === helpers ===

/**
 * A fresh browser context and page whose requests and console errors are
 * recorded; the context closes when the test ends.
 */
async function fresh(t) {
  const context = await browser.newContext();
  context.setDefaultTimeout(15_000);
  const page = await context.newPage();
  const seen = { requests: [], errors: [] };
  page.on("request", (req) => {
    let from = "";
    try {
      from = req.frame().url();
    } catch {
      // A request of no frame (a service worker's): there are none here.
    }
    seen.requests.push({ url: req.url(), method: req.method(), navigation: req.isNavigationRequest(), from });
  });
  page.on("console", (msg) => {
    // An HTTP error status is logged too (a 401 for a wrong password): the
    // tests check statuses themselves. Anything else (a CSP violation, a
    // blocked load) is a finding.
    const text = msg.text();
    if (msg.type() === "error" && !text.includes("the server responded with a status of")) {
      seen.errors.push(`${text} (${msg.location().url})`);
    }
  });
  page.on("pageerror", (err) => seen.errors.push(String(err)));
  t.after(() => context.close());
  return { context, page, seen };
}

const origin = (url) => {
  try {
    return new URL(url).origin;
  } catch {
    return url;
  }
};

/**
 * What every portcullis page must do for the requests it made: nothing
 * loaded from another origin, no form posted elsewhere, and nothing the
 * browser refused or complained about (a CSP violation is a console error).
 */
function assertNothingLeft(seen) {
  const ours = seen.requests.filter((r) => origin(r.from) === ISSUER);
  for (const r of ours) {
    if (!r.navigation || r.method === "POST") {
      assert.equal(origin(r.url), ISSUER, `a portcullis page sent ${r.method} ${r.url}`);
    }
  }
  assert.deepEqual(seen.errors, [], "console errors on the pages");
}

/**
 * Checks a portcullis page as the browser got it: the response's headers,
 * every field labelled, the stylesheet applied (so the CSP admitted it by
 * its hash), and nothing loaded by the page itself.
 */
async function assertHostedPage(page, response) {
  assert.equal(origin(page.url()), ISSUER, `on ${page.url()}`);
  const h = response.headers();
  const csp = h["content-security-policy"] ?? "";
  for (const needed of ["default-src 'none'", "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'"]) {
    assert.ok(csp.includes(needed), `${needed} missing from ${csp}`);
  }
  assert.match(csp, /style-src 'sha256-[A-Za-z0-9+/]+=*';/);
  assert.doesNotMatch(csp, /unsafe|script-src|\*/);
  assert.equal(h["x-frame-options"], "DENY");
  assert.equal(h["x-content-type-options"], "nosniff");
  assert.equal(h["cache-control"], "no-store");
  const unlabelled = await page.evaluate(() =>
    [...document.querySelectorAll("input:not([type=hidden]), select, textarea")]
      .filter((e) => e.labels.length === 0 && !e.getAttribute("aria-label"))
      .map((e) => e.outerHTML),
  );
  assert.deepEqual(unlabelled, [], "fields without a label");
  const style = await page.evaluate(() => getComputedStyle(document.body).maxWidth);
  assert.equal(style, "384px", "the page's stylesheet was applied");
  const loaded = await page.evaluate(() => performance.getEntriesByType("resource").map((e) => e.name));
  for (const url of loaded) assert.equal(origin(url), ISSUER, `the page loaded ${url}`);
}

/**
 * Clicks `what` (or runs it), waits until the page it leads to has loaded
 * (after any redirects), and returns the response of the form's POST.
 */
async function posting(page, what) {
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.request().method() === "POST" && origin(r.url()) === ISSUER),
    page.waitForNavigation(),
    typeof what === "function" ? what() : what.click(),
  ]);
  return response;
}

/** Opens the RP's /start (with `query`) and returns the login page's response. */
async function start(page, query = "") {
  const response = await page.goto(`${rp.base}/start${query}`);
  return response;
}

/** The outcome the RP's callback page shows. */
async function outcome(page) {
  await page.waitForURL(`${rp.base}/callback?**`);
  return JSON.parse(await page.locator("#result").textContent());
}

/** Fills the login form by its labels and signs in. */
async function signIn(page, email, password) {
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(password);
  return posting(page, page.getByRole("button", { name: "Sign in" }));
}

/** The text of the page's alert (the form's message). */
const alertText = (page) => page.getByRole("alert").textContent();

// === the tests ===

test("sign in: authorization code with PKCE, an ID token openid-client validated", async (t) => {
  const { context, page, seen } = await fresh(t);
  const form = await start(page);
  assert.equal(form.status(), 200);
  assert.equal(new URL(page.url()).pathname, "/login");
  await assertHostedPage(page, form);
  assert.equal(await page.getByRole("heading", { name: "Sign in" }).count(), 1);
  await signIn(page, alice.email, seed.password);
  const result = await outcome(page);
  assert.equal(result.ok, true, JSON.stringify(result));
  assert.equal(result.id.sub, alice.id);
  assert.equal(result.id.iss, ISSUER);
  assert.equal(result.id.aud, seed.client_id);
  assert.equal(result.id.email, alice.email);
  assert.equal(result.id.org_id, acme);
  assert.equal(result.access.org_id, acme);
  assert.equal(result.access.scope, "openid profile email read:data");
  assert.equal(result.userinfo.sub, alice.id);
  // The session cookie is HttpOnly and SameSite=Lax; the CSRF cookie Strict.
  const cookies = await context.cookies(ISSUER);
  const session = cookies.find((c) => c.name === "portcullis_session");
  assert.ok(session?.httpOnly && session.sameSite === "Lax", JSON.stringify(cookies));
  const csrf = cookies.find((c) => c.name === "portcullis_login");
  assert.ok(csrf?.httpOnly && csrf.sameSite === "Strict", JSON.stringify(cookies));
  assertNothingLeft(seen);
});

test("a wrong password: the error is shown, the same as for an unknown email", async (t) => {
  const { page, seen } = await fresh(t);
  await start(page);
  const shown = [];
  for (const email of ["nobody@example.test", alice.email]) {
    const response = await signIn(page, email, "not the password");
    assert.equal(response.status(), 401);
    await assertHostedPage(page, response);
    shown.push(await alertText(page));
    // The email stays, the password does not; the message describes both.
    assert.equal(await page.getByLabel("Email").inputValue(), email);
    assert.equal(await page.getByLabel("Password").inputValue(), "");
    assert.equal(await page.getByLabel("Password").getAttribute("aria-describedby"), "error");
  }
  assert.deepEqual(shown, ["wrong email or password", "wrong email or password"]);
  // The page is still good for the right password.
  await signIn(page, alice.email, seed.password);
  const result = await outcome(page);
  assert.equal(result.id.sub, alice.id);
  assertNothingLeft(seen);
});

test("the lockout message after repeated failures, for known and unknown accounts alike", async (t) => {
  const { page, seen } = await fresh(t);
  await start(page);
  for (const email of [carol.email, "nobody-else@example.test"]) {
    // Three failures are answered as such; then the account waits at this
    // address (2 s, doubling). A slow machine may let a wait end before the
    // next try: that try fails again and the next wait is twice as long, so
    // the message comes within a few tries whatever the speed.
    for (let i = 0; i < 3; i++) {
      const response = await signIn(page, email, "guess");
      assert.equal(response.status(), 401);
      assert.equal(await alertText(page), "wrong email or password");
    }
    let response;
    for (let i = 0; i < 4; i++) {
      response = await signIn(page, email, "guess");
      if (response.status() === 429) break;
      assert.equal(response.status(), 401);
    }
    assert.equal(response.status(), 429);
    await assertHostedPage(page, response);
    assert.ok(Number(response.headers()["retry-after"]) >= 1);
    assert.equal(
      await alertText(page),
      "too many failed sign-ins for this account from your network; wait a moment and try again",
    );
    assert.equal(await page.getByLabel("Email").inputValue(), email);
  }
  assert.equal(rp.outcomes.filter((o) => o.id?.sub === carol.id).length, 0);
  assertNothingLeft(seen);
});

test("the organization chooser: a user of two organizations picks one, the tokens carry it", async (t) => {
  const { page, seen } = await fresh(t);
  await start(page);
  const chooser = await signIn(page, bob.email, seed.password);
  assert.equal(chooser.status(), 200);
  await assertHostedPage(page, chooser);
  const group = page.getByRole("group", { name: "Organization" });
  assert.equal(await group.getByRole("radio").count(), 2);
  assert.equal(await page.getByLabel("Acme").isChecked(), true);
  await page.getByLabel("Beta").check();
  await posting(page, page.getByRole("button", { name: "Continue" }));
  const result = await outcome(page);
  assert.equal(result.ok, true, JSON.stringify(result));
  assert.equal(result.id.sub, bob.id);
  assert.equal(result.id.org_id, beta);
  assert.equal(result.id.org_name, "Beta");
  assert.equal(result.access.org_id, beta);
  assert.deepEqual(result.access.roles, ["reader"]);
  assertNothingLeft(seen);
});

test("keyboard only: Tab and Enter through the form and the chooser", async (t) => {
  const { page, seen } = await fresh(t);
  await start(page);
  const focused = () => page.evaluate(() => {
    const e = document.activeElement;
    return e.id || e.value || e.textContent;
  });
  // The email field has the focus on arrival (autofocus, applied once the
  // page is rendered: wait for it to land somewhere).
  const landed = () => page.waitForFunction(() => document.activeElement !== document.body);
  await landed();
  assert.equal(await focused(), "email");
  await page.keyboard.type(bob.email);
  await page.keyboard.press("Tab");
  assert.equal(await focused(), "password");
  await page.keyboard.type(seed.password);
  await page.keyboard.press("Tab");
  assert.equal(await focused(), "Sign in");
  const chooser = await posting(page, () => page.keyboard.press("Enter"));
  assert.equal(chooser.status(), 200);
  // The chosen organization has the focus; an arrow key moves the choice.
  await landed();
  assert.equal(await focused(), acme);
  await page.keyboard.press("ArrowDown");
  assert.equal(await focused(), beta);
  assert.equal(await page.getByLabel("Beta").isChecked(), true);
  await page.keyboard.press("Tab");
  assert.equal(await focused(), "Continue");
  await posting(page, () => page.keyboard.press("Enter"));
  const result = await outcome(page);
  assert.equal(result.id.sub, bob.id);
  assert.equal(result.id.org_id, beta);
  assertNothingLeft(seen);
});

test("prompt=login asks for the password again although a session exists", async (t) => {
  const { page, seen } = await fresh(t);
  await start(page);
  await signIn(page, alice.email, seed.password);
  const first = await outcome(page);
  // The session skips the form…
  await start(page);
  const again = await outcome(page);
  assert.equal(again.id.sub, alice.id);
  assert.equal(again.id.auth_time, first.id.auth_time);
  // …unless the client asks for a new sign-in.
  const form = await start(page, "?prompt=login");
  assert.equal(new URL(page.url()).pathname, "/login");
  await assertHostedPage(page, form);
  await signIn(page, alice.email, seed.password);
  const fresh_ = await outcome(page);
  assert.equal(fresh_.ok, true, JSON.stringify(fresh_));
  assert.equal(fresh_.id.sub, alice.id);
  assert.ok(fresh_.id.auth_time >= first.id.auth_time);
  assertNothingLeft(seen);
});

test("logout with id_token_hint: confirmed, back at the client, the session gone", async (t) => {
  const { context, page, seen } = await fresh(t);
  await start(page);
  await signIn(page, alice.email, seed.password);
  assert.equal((await outcome(page)).ok, true);
  const confirmation = await page.goto(`${rp.base}/logout`);
  assert.equal(new URL(page.url()).pathname, "/logout");
  assert.ok(new URL(page.url()).searchParams.has("id_token_hint"));
  await assertHostedPage(page, confirmation);
  await posting(page, page.getByRole("button", { name: "Sign out" }));
  await page.waitForURL(`${rp.base}/logged-out?**`);
  assert.equal(await page.getByRole("heading").textContent(), "Logged out");
  const cookies = await context.cookies(ISSUER);
  assert.equal(cookies.find((c) => c.name === "portcullis_session"), undefined);
  // The session is gone: prompt=none cannot sign in, and the form is back.
  await start(page, "?prompt=none");
  const silent = await outcome(page);
  assert.equal(silent.ok, false);
  assert.equal(silent.error, "login_required");
  await start(page);
  assert.equal(new URL(page.url()).pathname, "/login");
  assertNothingLeft(seen);
});

test("a login form posted from another site is refused and changes nothing", async (t) => {
  // Mallory opens a login transaction of her own (its txn and csrf fields,
  // and her CSRF cookie, which stays with her), and makes the victim's
  // browser post it with her password: a login CSRF.
  let resp = await fetch(`${rp.base}/start`, { redirect: "manual" });
  resp = await fetch(resp.headers.get("location"), { redirect: "manual" });
  const loginUrl = new URL(resp.headers.get("location"), ISSUER);
  const html = await (await fetch(loginUrl, { headers: { cookie: resp.headers.get("set-cookie").split(";")[0] } })).text();
  const hidden = (name) => html.match(new RegExp(`name="${name}" value="([^"]*)"`))[1];
  const forged = new URLSearchParams({
    action: `${ISSUER}/login`,
    txn: hidden("txn"),
    csrf: hidden("csrf"),
    email: mallory.email,
    password: seed.password,
  });
  const outcomes = rp.outcomes.length;

  const { context, page, seen } = await fresh(t);
  // The victim has a sign-in of their own under way (their CSRF cookie).
  await start(page);
  const own = page.url();
  // From another site (its SameSite=Strict cookie is not sent), and from
  // another origin of this site (it is sent, and does not match).
  const port = new URL(rp.base).port;
  for (const site of [`http://localhost:${port}`, rp.base]) {
    const [refused] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === "POST"),
      page.goto(`${site}/forge?${forged}`, { waitUntil: "commit" }),
    ]);
    await page.waitForURL(`${ISSUER}/login`);
    assert.equal(refused.status(), 403, site);
    await assertHostedPage(page, refused);
    assert.match(await page.locator("p.error").textContent(), /could not be verified/);
    const cookies = await context.cookies(ISSUER);
    assert.equal(cookies.find((c) => c.name === "portcullis_session"), undefined, site);
    assert.equal(rp.outcomes.length, outcomes, "no code reached the client");
  }
  assert.equal(rp.outcomes.filter((o) => o.id?.sub === mallory.id).length, 0);
  // Mallory is not signed in here: the victim's own form signs in the victim.
  await page.goto(own);
  await signIn(page, alice.email, seed.password);
  const result = await outcome(page);
  assert.equal(result.id.sub, alice.id);
  assertNothingLeft(seen);
});

test("another site cannot frame the login page", async (t) => {
  const { page } = await fresh(t);
  const form = await start(page);
  assert.equal(form.status(), 200);
  const login = page.url();
  const port = new URL(rp.base).port;
  await page.goto(`http://localhost:${port}/frame?${new URLSearchParams({ src: login })}`);
  const [framed] = page.mainFrame().childFrames();
  assert.ok(framed, "the frame exists");
  let fields = 0;
  try {
    fields = await framed.locator("input").count();
  } catch {
    // The frame holds the browser's error page: nothing to count.
  }
  assert.equal(fields, 0, "the login form rendered inside another site's frame");
  assert.notEqual(framed.url(), login);
});
