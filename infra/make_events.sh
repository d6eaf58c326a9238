#!/usr/bin/env bash
# Regenerate the sample Lambda events in events/ with `sam local generate-event`
# (no Docker needed), then check each one parses the way the Lambdas will read it.
#
# usage: infra/make_events.sh [OUT_DIR]      (default: <repo>/events)
#   env: SAM (default <repo>/.venv/bin/sam), PYTHON (default <repo>/.venv/bin/python)
#
# sam's templates need a few fixes, done in Python after each call:
#  - `sqs receive-message --body` is pasted raw into a JSON template, so a JSON
#    body must be passed JSON-escaped; md5OfBody is then recomputed over the real
#    body (sam hashes the text it was given).
#  - `apigateway http-api-proxy` always gives routeKey "$default", a base64 body,
#    and placeholder cookies/query string/path parameters/JWT claims/client cert;
#    they are replaced by what an HTTP API with the routes "GET /health" and
#    "POST /search" and no authorizer sends (payload format 2.0).
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(dirname "$SCRIPT_DIR")
OUT=${1:-$REPO_ROOT/events}
SAM=${SAM:-$REPO_ROOT/.venv/bin/sam}
PYTHON=${PYTHON:-$REPO_ROOT/.venv/bin/python}
export SAM_CLI_TELEMETRY=0

BUCKET=pictrace-local
KEY=images/astronaut.jpg
QUEUE=pictrace-ingest
ZERO_ID=$(printf '0%.0s' {1..64})

mkdir -p "$OUT"
gen() { "$SAM" local generate-event "$@"; }

# Rewrites the JSON file $1 in place with the Python snippet $2 (the event is `e`).
fix() {
    "$PYTHON" - "$1" "$2" <<'PY'
import hashlib, json, sys
path, code = sys.argv[1], sys.argv[2]
with open(path) as f:
    e = json.load(f)
exec(code, {"e": e, "json": json, "hashlib": hashlib})
with open(path, "w") as f:
    json.dump(e, f, indent=2)
    f.write("\n")
PY
}

# --- S3 notifications (as S3 sends them) ------------------------------------
gen s3 put --bucket "$BUCKET" --key "$KEY" >"$OUT/s3_put.json"
gen s3 delete --bucket "$BUCKET" --key "$KEY" >"$OUT/s3_delete.json"

# --- the same notifications delivered through SQS (what the ingest Lambda gets)
SQS_FIX='
r = e["Records"][0]
r["md5OfBody"] = hashlib.md5(r["body"].encode()).hexdigest()
if KIND == "delete":  # sam gives every message the same id; keep the two apart
    r["messageId"] = "2e1424d4-f796-459a-8184-9c92662be6da"
'
for kind in put delete; do
    # compact JSON like S3 writes it, escaped for sam's raw template substitution
    escaped=$("$PYTHON" -c 'import json,sys; print(json.dumps(json.dumps(json.load(open(sys.argv[1])), separators=(",", ":")))[1:-1])' "$OUT/s3_$kind.json")
    gen sqs receive-message --queue-name "$QUEUE" --body "$escaped" >"$OUT/sqs_s3_$kind.json"
    fix "$OUT/sqs_s3_$kind.json" "KIND = '$kind'
$SQS_FIX"
done

# --- a new image's copy check as ingest queues it (what the copies Lambda gets): the id of images/astronaut.jpg's
# bytes (tests/data/astronaut.jpg), as pictrace.copies.CheckRequest writes it
ASTRONAUT_ID=$(sha256sum "$REPO_ROOT/tests/data/astronaut.jpg" | cut -d' ' -f1)
escaped=$("$PYTHON" -c 'import json,sys; print(json.dumps(json.dumps({"id": sys.argv[1]}))[1:-1])' "$ASTRONAUT_ID")
gen sqs receive-message --queue-name pictrace-copies --body "$escaped" >"$OUT/sqs_copies_check.json"
fix "$OUT/sqs_copies_check.json" '
r = e["Records"][0]
r["md5OfBody"] = hashlib.md5(r["body"].encode()).hexdigest()
r["messageId"] = "6f0d1b8e-2c4a-4f7e-9a51-3b8c2d7e4f10"
'

# --- a new image's details as ingest queues them (what the details Lambda gets): the same id, as
# pictrace.detailstage.DetailsQueue writes it
gen sqs receive-message --queue-name pictrace-details --body "$escaped" >"$OUT/sqs_details_make.json"
fix "$OUT/sqs_details_make.json" '
r = e["Records"][0]
r["md5OfBody"] = hashlib.md5(r["body"].encode()).hexdigest()
r["messageId"] = "0b7c4d2e-8f1a-4c3b-9e6d-5a2f1c8b7d93"
'

# --- HTTP API (payload format 2.0) requests for the search Lambda -------------
HTTP_FIX='
route = e["requestContext"]["http"]["method"] + " " + e["rawPath"]
e["routeKey"] = e["requestContext"]["routeKey"] = route
e["rawQueryString"] = ""
for k in ("cookies", "queryStringParameters", "pathParameters", "stageVariables"):
    e.pop(k, None)
for k in ("authentication", "authorizer"):
    e["requestContext"].pop(k, None)
e["requestContext"]["http"]["sourceIp"] = "127.0.0.1"
e["requestContext"]["http"]["userAgent"] = "curl/8.0"
headers = {
    "accept": "*/*",
    "host": e["requestContext"]["domainName"],
    "user-agent": "curl/8.0",
    "x-forwarded-for": "127.0.0.1",
    "x-forwarded-port": "443",
    "x-forwarded-proto": "https",
}
if BODY is None:
    e.pop("body", None)
else:
    import base64
    e["body"] = base64.b64decode(e["body"]).decode()  # HTTP APIs pass JSON as text
    headers["content-type"] = "application/json"
    headers["content-length"] = str(len(e["body"].encode()))
e["isBase64Encoded"] = False
e["headers"] = dict(sorted(headers.items()))
'
# shellcheck disable=SC2016  # $default is the literal stage name
STAGE='$default'
gen apigateway http-api-proxy --method GET --path health --stage "$STAGE" >"$OUT/apigw_health.json"
fix "$OUT/apigw_health.json" "BODY = None
$HTTP_FIX"
gen apigateway http-api-proxy --method POST --path search --stage "$STAGE" \
    --body "{\"id\": \"$ZERO_ID\"}" >"$OUT/apigw_search_id.json"
fix "$OUT/apigw_search_id.json" "BODY = True
$HTTP_FIX"

# --- check: parse them the way the Lambdas do ---------------------------------
"$PYTHON" - "$OUT" "$BUCKET" "$KEY" "$ZERO_ID" "$ASTRONAUT_ID" <<'PY'
import json, os, sys
from aws_lambda_powertools.utilities.data_classes import S3Event, SQSEvent
from mangum import Mangum
from pictrace.copies import CheckRequest
from pictrace.detailstage import requested_id

out, bucket, key, zero_id, astronaut_id = sys.argv[1:]
load = lambda n: json.load(open(os.path.join(out, n)))  # noqa: E731

for kind, name in (("put", "ObjectCreated:Put"), ("delete", "ObjectRemoved:Delete")):
    s3 = load(f"s3_{kind}.json")
    rec = S3Event(s3).record
    assert (rec.event_name, rec.s3.bucket.name, rec.s3.get_object.key) == (name, bucket, key), kind
    sqs = SQSEvent(load(f"sqs_s3_{kind}.json"))
    records = list(sqs.records)
    assert len(records) == 1 and records[0].json_body == s3, kind
    print(f"ok s3_{kind}.json / sqs_s3_{kind}.json: {name} s3://{bucket}/{key}")

(check,) = SQSEvent(load("sqs_copies_check.json")).records
assert CheckRequest.from_body(check.json_body) == CheckRequest(astronaut_id), check.body
print(f"ok sqs_copies_check.json: check {astronaut_id}")
(make,) = SQSEvent(load("sqs_details_make.json")).records
assert requested_id(make.body) == astronaut_id, make.body
print(f"ok sqs_details_make.json: details of {astronaut_id}")


async def app(scope, receive, send):  # echoes what Mangum hands to the ASGI app
    body = b""
    while True:
        msg = await receive()
        body += msg.get("body", b"")
        if not msg.get("more_body"):
            break
    headers = {k.decode(): v.decode() for k, v in scope["headers"]}
    payload = json.dumps({"method": scope["method"], "path": scope["path"],
                          "content_type": headers.get("content-type"), "body": body.decode()}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": payload})


handler = Mangum(app, lifespan="off")
for name, want in (
    ("apigw_health.json", {"method": "GET", "path": "/health", "content_type": None, "body": ""}),
    ("apigw_search_id.json", {"method": "POST", "path": "/search", "content_type": "application/json",
                              "body": json.dumps({"id": zero_id})}),
):
    got = json.loads(handler(load(name), None)["body"])
    assert got == want, (name, got)
    print(f"ok {name}: {got['method']} {got['path']} body={got['body'] or '(none)'}")
PY
