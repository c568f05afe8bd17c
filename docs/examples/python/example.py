"""pgwarden from Python: SQL over HTTP with Basic credentials, then with a
token from POST /_token (standard library only), then a Postgres wire
connection with psycopg2 over TLS with SCRAM-SHA-256.

    PGWARDEN_URL=http://127.0.0.1:8432 PGWARDEN_PGPORT=6432 PGWARDEN_CA=certs/ca.crt \
    PGWARDEN_USER=alice PGWARDEN_PASSWORD=... python3 docs/examples/python/example.py
"""
import base64
import json
import os
import urllib.error
import urllib.request

import psycopg2

BASE = os.environ["PGWARDEN_URL"]
USER = os.environ["PGWARDEN_USER"]
PASSWORD = os.environ["PGWARDEN_PASSWORD"]


def post(path, auth, body=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(BASE + path, data=data, method="POST")
    req.add_header("Authorization", auth)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=20) as resp:
            return json.load(resp)
    except urllib.error.HTTPError as e:
        # Every error has the same body: {"error": {"code", "message"}}.
        err = json.load(e)["error"]
        raise SystemExit(f"{e.code} {err['code']}: {err['message']}")


basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

# 1. Basic credentials.
out = post("/_sql", basic, {"stmt": "SELECT current_user AS who, $1::int + 1 AS answer", "args": [41]})
print("http basic:", out["rows"])

# 2. A token, then Bearer.
token = post("/_token", basic)["token"]
out = post("/_sql", "Bearer " + token, {"stmt": "SELECT current_user AS who"})
print("http bearer:", out["rows"])

# 3. The wire, TLS verified against pgwarden's CA, SCRAM-SHA-256 with
# channel binding.
conn = psycopg2.connect(host="localhost", port=os.environ["PGWARDEN_PGPORT"], user=USER, password=PASSWORD,
                        dbname="postgres", sslmode="verify-full", sslrootcert=os.environ["PGWARDEN_CA"],
                        channel_binding="require", connect_timeout=20)
with conn, conn.cursor() as cur:
    cur.execute("SELECT current_user")
    print("wire tls scram:", cur.fetchone()[0])
conn.close()
