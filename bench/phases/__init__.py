"""The bench's phases, one module each (bench.run calls them in order; bench.results is what they return, as
results.json holds it). Each phase function returns a typed result: a frozen dataclass, or a TypedDict where the
result is a child process's JSON. No phase imports the runner or the report (tests/unit/test_architecture.py).

machine, data, side_index, queries, quality (per model; and the signals `make fit-fusion` fits on), gist,
embed_speed, latency, scan, memory, coldstart, large_ingest, capacity, backends.
The models' artifacts are built by bench.models; the index through the SQS path by bench.stack.upload_and_index.
"""
