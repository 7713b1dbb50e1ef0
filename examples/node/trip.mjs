// The trip lifecycle against `axb api`, from Node.js with only its built-in fetch, crypto and http:
// bind (waiting for the result with ?wait), extend, unbind; each with a CallbackUrl served here,
// whose callbacks are checked with verifySignature. Prints one JSON summary; exit code 0 when
// every step (and, unless --no-callbacks, every callback's signature) checked out.
//
//   AXB_API_URL=http://127.0.0.1:8080 AXB_API_TOKEN=axb_... AXB_CALLBACK_SECRET=... node examples/node/trip.mjs
//
// Options: --pool-key FC100000001 --phone-no-a 13800000000 --phone-no-b 13900000000
//          --no-callbacks (skip the callback receiver)   --callback-host 127.0.0.1
import { createServer } from "node:http";
import { randomUUID } from "node:crypto";
import { verifySignature } from "./signature.mjs";

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const base = (process.env.AXB_API_URL ?? "http://127.0.0.1:8080").replace(/\/$/, "");
const token = process.env.AXB_API_TOKEN;
const secret = process.env.AXB_CALLBACK_SECRET ?? "";
const withCallbacks = !args.includes("--no-callbacks");
if (!token) {
  console.error("set AXB_API_TOKEN (axb token create NAME --scopes bind,read,operate)");
  process.exit(2);
}

// Expiration: yyyy-MM-dd HH:mm:ss in China Standard Time (UTC+8).
const cst = (minutesAhead) =>
  new Date(Date.now() + (8 * 60 + minutesAhead) * 60_000).toISOString().slice(0, 19).replace("T", " ");

async function call(method, path, body, headers = {}) {
  const res = await fetch(base + path, {
    method,
    headers: { Authorization: `Bearer ${token}`, ...(body ? { "Content-Type": "application/json" } : {}), ...headers },
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = await res.json();
  if (res.status >= 400) throw new Error(`${method} ${path}: ${res.status} ${json.Code}: ${json.Message}`);
  return { status: res.status, location: res.headers.get("location"), json };
}

// Callbacks may come more than once: keep them by delivery id.
const callbacks = new Map();
let waiters = [];
const receiver = createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const raw = Buffer.concat(chunks);
    const verified = verifySignature(secret, req.headers["x-axb-signature"], raw);
    if (!verified) {
      res.writeHead(400).end("bad signature");
      return;
    }
    const doc = JSON.parse(raw.toString("utf8"));
    // The same delivery may come more than once: keep one per X-Axb-Delivery.
    callbacks.set(req.headers["x-axb-delivery"] ?? randomUUID(), { key: doc.key, doc, verified });
    res.writeHead(204).end();
    waiters = waiters.filter((w) => !w());
  });
});

function callbackFor(key, timeoutMs = 20_000) {
  const find = () => [...callbacks.values()].find((c) => c.key === key && c.doc.status !== "pending");
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no callback for ${key} in ${timeoutMs} ms`)), timeoutMs);
    const check = () => {
      const found = find();
      if (found) {
        clearTimeout(timer);
        resolve(found);
      }
      return Boolean(found);
    };
    if (!check()) waiters.push(check);
  });
}

const summary = { steps: [] };
const step = (name, info) => summary.steps.push({ step: name, ...info });
try {
  let callbackUrl;
  if (withCallbacks) {
    await new Promise((r) => receiver.listen(0, opt("callback-host", "127.0.0.1"), r));
    callbackUrl = `http://${opt("callback-host", "127.0.0.1")}:${receiver.address().port}/axb`;
  }
  const trip = `node-trip-${randomUUID().slice(0, 8)}`;
  const request = {
    PoolKey: opt("pool-key", "FC100000001"),
    PhoneNoA: opt("phone-no-a", "13800000000"),
    PhoneNoB: opt("phone-no-b", "13900000000"),
    Expiration: cst(60),
    OutId: trip,
    ...(callbackUrl ? { CallbackUrl: callbackUrl } : {}),
  };

  // 1. Trip created: bind, then wait for the result (the request is held until the bind ends).
  const bind = await call("POST", "/v1/binds", request, { "Idempotency-Key": trip });
  if (bind.status !== 202) throw new Error(`bind: expected 202, got ${bind.status}`);
  const again = await call("POST", "/v1/binds", request, { "Idempotency-Key": trip });
  if (again.status !== 200 || again.json.key !== trip) throw new Error("the repeated bind was not the same bind");
  const bound = (await call("GET", `${bind.location}?wait=20`)).json;
  if (bound.status !== "succeeded" || bound.state !== "bound") throw new Error(`bind ended ${bound.status}`);
  step("bind", { key: trip, state: bound.state, SecretNo: bound.SecretBindDTO.SecretNo });

  // 2. Trip runs late: move the Expiration.
  const ext = await call("POST", `/v1/binds/${encodeURIComponent(trip)}/extend`, {
    Expiration: cst(180),
    ...(callbackUrl ? { CallbackUrl: callbackUrl } : {}),
  });
  const extended = (await call("GET", `${ext.location}?wait=20`)).json;
  if (extended.outcome !== "extended") throw new Error(`extend ended ${extended.status}/${extended.outcome}`);
  step("extend", { key: ext.json.key, outcome: extended.outcome, Expiration: extended.Expiration });

  // 3. Trip ends: release the X number.
  const unb = await call("POST", `/v1/binds/${encodeURIComponent(trip)}/unbind`, callbackUrl ? { CallbackUrl: callbackUrl } : undefined);
  const unbound = (await call("GET", `${unb.location}?wait=20`)).json;
  if (unbound.outcome !== "unbound") throw new Error(`unbind ended ${unbound.status}/${unbound.outcome}`);
  step("unbind", { key: unb.json.key, outcome: unbound.outcome });

  // 4. The callbacks: one per finished piece of work, each signed.
  if (withCallbacks) {
    for (const key of [trip, ext.json.key, unb.json.key]) {
      const cb = await callbackFor(key);
      step("callback", { key, status: cb.doc.status, kind: cb.doc.kind, verified: cb.verified });
    }
  }
  summary.ok = true;
} catch (err) {
  summary.ok = false;
  summary.error = String(err.message ?? err);
} finally {
  receiver.close();
}
console.log(JSON.stringify(summary, null, 2));
process.exit(summary.ok ? 0 : 1);
