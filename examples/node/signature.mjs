// Verify an axb completion callback: X-Axb-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">
// under AXB_CALLBACK_SECRET (Stripe's webhook scheme). Node's built-in crypto only.
//
//   import { verifySignature } from "./signature.mjs";
//   verifySignature(secret, req.headers["x-axb-signature"], rawBodyBuffer)  // true or false
//
// Run alone, it checks one signature given on stdin as JSON {secret, header, body} and exits 0 or 1.
import { createHmac, timingSafeEqual } from "node:crypto";

export function verifySignature(secret, header, rawBody, { toleranceS = 300, nowS = Date.now() / 1000 } = {}) {
  if (!secret || !header) return false;
  const parts = Object.fromEntries(
    String(header).split(",").map((p) => p.trim().split("=", 2)).filter((kv) => kv.length === 2),
  );
  const t = Number(parts.t);
  if (!Number.isInteger(t) || Math.abs(nowS - t) > toleranceS || !/^[0-9a-f]{64}$/.test(parts.v1 ?? "")) {
    return false; // no timestamp, too old (a replay), or no v1 signature
  }
  const body = Buffer.isBuffer(rawBody) ? rawBody : Buffer.from(rawBody, "utf8");
  const expected = createHmac("sha256", secret).update(`${t}.`).update(body).digest();
  return timingSafeEqual(expected, Buffer.from(parts.v1, "hex"));
}

if (import.meta.url === `file://${process.argv[1]}`) {
  let input = "";
  for await (const chunk of process.stdin) input += chunk;
  const { secret, header, body } = JSON.parse(input);
  const ok = verifySignature(secret, header, body);
  console.log(JSON.stringify({ verified: ok }));
  process.exit(ok ? 0 : 1);
}
