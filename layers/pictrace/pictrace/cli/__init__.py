"""`pictrace`: index a folder or a bucket, search, delete and look at the index, from a terminal.

A thin layer: searching goes through the HTTP API (what any client sees); ingesting, deleting and the index's
numbers go through pictrace's own modules on the bucket (Ingestor.sync_key, IndexStore), the same code the
ingest function runs.

Where it points, by flag or environment (the defaults are `make run`'s local stack):
    --api          PICTRACE_API_URL      http://127.0.0.1:8000
    --s3-endpoint  AWS_ENDPOINT_URL_S3   http://127.0.0.1:5055   ('aws' or empty: AWS's own endpoints)
    --bucket       PICTRACE_BUCKET       pictrace-local
Against a loopback endpoint without AWS credentials in the environment it uses moto's dummy ones.

Exit codes (stable, for scripts; errors go to stderr, results to stdout):
    0  done
    1  nothing found: no results, no such image, key or id, no images under the path or prefix,
       or images that could not be indexed (each is listed with its reason)
    2  usage or configuration: bad arguments, a file that does not exist, a query the API refused
       (HTTP 400/413/422), no AWS credentials, no model artifact, model weights that differ from the index's
    3  service error: the API or S3 cannot be reached or failed (HTTP 5xx, S3 errors), or indexing timed out

Modules: main (parser, exit codes), common (Target, settings, API calls, errors), render (output), and one per
command: search, compare, ingest (with upload), delete, stats, vectors (vectors-backfill).
"""

from pictrace.cli.main import main

__all__ = ["main"]
