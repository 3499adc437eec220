// Node 20 `fetch` through undici's ProxyAgent: one chat completion, prints the answer.
//
//   LLM_BASE_URL    e.g. https://localhost:8443/v1
//   OPENAI_API_KEY  default sk-test-not-a-real-key
//   LLM_MODEL       default gpt-4o-mini
//   HTTPS_PROXY     (or https_proxy, ALL_PROXY) if set, requests go through it (CONNECT)
//   NODE_EXTRA_CA_CERTS  extra CA PEM file; Node reads it at start-up and adds it to
//                   the default store, which undici's TLS connections use. It is also
//                   passed explicitly to the ProxyAgent (requestTls/proxyTls), so the
//                   example works the same on runtimes that ignore the variable.
//
// Usage: node node_fetch.mjs [prompt]      (run `npm install` in this folder first)
// Exit status 1 with the error on stderr on any HTTP or network error.
import { readFileSync } from "node:fs";
import { rootCertificates } from "node:tls";
import { Agent, ProxyAgent } from "undici";

const baseUrl = process.env.LLM_BASE_URL ?? "https://api.openai.com/v1";
const apiKey = process.env.OPENAI_API_KEY ?? "sk-test-not-a-real-key";
const model = process.env.LLM_MODEL ?? "gpt-4o-mini";
const prompt = process.argv[2] ?? "Say hello to the tape deck";
const proxy =
  process.env.HTTPS_PROXY ?? process.env.https_proxy ?? process.env.ALL_PROXY ?? process.env.all_proxy;

// Setting `ca` replaces Node's default store, so keep the public roots next to the extra CA.
const extraCa = process.env.NODE_EXTRA_CA_CERTS;
const tls = extraCa ? { ca: [...rootCertificates, readFileSync(extraCa, "utf8")] } : {};
const dispatcher = proxy
  ? new ProxyAgent({ uri: proxy, requestTls: tls, proxyTls: tls })
  : new Agent({ connect: tls });

async function main() {
  const resp = await fetch(`${baseUrl}/chat/completions`, {
    method: "POST",
    dispatcher,
    headers: { authorization: `Bearer ${apiKey}`, "content-type": "application/json" },
    body: JSON.stringify({ model, messages: [{ role: "user", content: prompt }] }),
  });
  const text = await resp.text();
  if (!resp.ok) throw new Error(`HTTP ${resp.status}: ${text}`);
  const body = JSON.parse(text);
  console.log(`answer: ${body.choices[0].message.content}`);
}

try {
  await main();
} catch (e) {
  console.error(`error: ${e?.cause ? `${e.message}: ${e.cause.message ?? e.cause}` : e?.message ?? e}`);
  process.exitCode = 1;
} finally {
  await dispatcher.close();
}
