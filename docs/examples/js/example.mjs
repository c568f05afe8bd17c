// pgwarden from JavaScript (Node 18+): SQL over HTTP with Basic
// credentials, then with a token from POST /_token (built-in fetch), then a
// Postgres wire connection with node-postgres (pg) over TLS with
// SCRAM-SHA-256.
//
//   cd docs/examples/js && npm ci
//   PGWARDEN_URL=http://127.0.0.1:8432 PGWARDEN_PGPORT=6432 PGWARDEN_CA=certs/ca.crt \
//   PGWARDEN_USER=alice PGWARDEN_PASSWORD=... node example.mjs
import { readFileSync } from "node:fs";
import pg from "pg";

const { PGWARDEN_URL: base, PGWARDEN_USER: user, PGWARDEN_PASSWORD: password } = process.env;

async function post(path, auth, body) {
  const headers = { Authorization: auth };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(base + path, { method: "POST", headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const out = await resp.json();
  // Every error has the same body: {"error": {"code", "message"}}.
  if (!resp.ok) throw new Error(`${resp.status} ${out.error.code}: ${out.error.message}`);
  return out;
}

const basic = "Basic " + Buffer.from(`${user}:${password}`).toString("base64");

// 1. Basic credentials.
let out = await post("/_sql", basic, { stmt: "SELECT current_user AS who, $1::int + 1 AS answer", args: [41] });
console.log("http basic:", JSON.stringify(out.rows));

// 2. A token, then Bearer.
const { token } = await post("/_token", basic);
out = await post("/_sql", "Bearer " + token, { stmt: "SELECT current_user AS who" });
console.log("http bearer:", JSON.stringify(out.rows));

// 3. The wire, TLS verified against pgwarden's CA, SCRAM-SHA-256.
const client = new pg.Client({
  host: "localhost",
  port: Number(process.env.PGWARDEN_PGPORT),
  user,
  password,
  database: "postgres",
  ssl: { ca: readFileSync(process.env.PGWARDEN_CA), servername: "localhost" },
  connectionTimeoutMillis: 20000,
});
await client.connect();
const res = await client.query("SELECT current_user");
console.log("wire tls scram:", res.rows[0].current_user);
await client.end();
