// Node's built-in `fetch`: N GETs of FIXTURE_URL/item/I issued at once with Promise.all.
//
// Node 20's fetch ignores HTTPS_PROXY (only newer Node honours NODE_USE_ENV_PROXY=1),
// so when a proxy variable is set this installs undici's EnvHttpProxyAgent as the global
// dispatcher, as a Node 20 user does; `fetch` itself stays the built-in one. Trust comes
// from NODE_EXTRA_CA_CERTS (read by Node at start-up).
//
// Prints one line per request in request order (status, body hash, a tapedeck miss's
// kind); exit 1 if a request failed.
//
// Usage: node node_fetch_all.mjs [N]      (N default 24; undici from examples/node_modules)
import { createHash } from "node:crypto";
import { createRequire } from "node:module";

const require = createRequire(new URL("../package.json", import.meta.url));
const base = process.env.FIXTURE_URL;
const n = Number(process.argv[2] ?? 24);
const proxy =
  process.env.HTTPS_PROXY ?? process.env.https_proxy ?? process.env.ALL_PROXY ?? process.env.all_proxy;
if (proxy) {
  const { EnvHttpProxyAgent, setGlobalDispatcher } = require("undici");
  setGlobalDispatcher(new EnvHttpProxyAgent());
}

const results = await Promise.allSettled(
  Array.from({ length: n }, async (_, i) => {
    const resp = await fetch(`${base}/item/${i}`);
    const body = Buffer.from(await resp.arrayBuffer());
    return { status: resp.status, digest: createHash("sha256").update(body).digest("hex").slice(0, 12), miss: resp.headers.get("x-tapedeck-miss") };
  }),
);
let failed = 0;
results.forEach((r, i) => {
  if (r.status === "rejected") {
    failed += 1;
    const e = r.reason;
    console.log(`item ${i}: error ${e?.message}${e?.cause ? `: ${e.cause.message ?? e.cause}` : ""}`);
  } else {
    const { status, digest, miss } = r.value;
    console.log(`item ${i}: ${status} ${digest}${miss ? ` MISS ${miss}` : ""}`);
  }
});
process.exitCode = failed ? 1 : 0;
