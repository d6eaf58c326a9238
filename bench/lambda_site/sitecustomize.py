"""Imported at start-up by every Python the bench's cold starts run (bench.phases.coldstart puts this directory on
their PYTHONPATH), the exec wrapper's prefetch included: what the Lambda layers do not ship fails to import there,
as in Lambda (bench.layersonly)."""

from bench.layersonly import hide

hide()
