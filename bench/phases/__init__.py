"""The bench's phases, one module each: bench.run calls them in order and each returns a typed result (bench.results);
no phase imports the runner or the report (tests/unit/test_architecture.py)."""
