"""The bench's phases, one module each; bench.run calls them in order and writes their results to results.json.

Every phase function returns a typed result: a frozen dataclass (written as its dict, or as its `record()` where
results.json's shape is not its fields'), or a TypedDict where the result is a JSON-shaped record anyway (a child
process's output, the search records).

- machine: what the run ran on
- build: the models' artifacts
- data: originals (some held out), distractors, the index's files
- side_index: the other models' indexes of the same images
- queries: the edited copies of the originals
- quality: every query through the search, per model; the signals `make fit-fusion` fits on
- gist: does gist still add recall (shortlist half, fusion weight)
- embed_speed: ms per image of each model
- latency: search latency by stage at N = 1,000 and, padded with synthetic rows, at N = scan_n
- seed: the seed's method, latency and recall (when the profile asks for it)
- scan: the search's scan against faiss IndexFlatIP
- memory: the index's resident memory (fresh process)
- coldstart: the search Lambda's cold starts, before and after a compaction
- large_ingest: ingest of >= 12 MP JPEGs against the model alone
- backends: Keras against ONNX Runtime for the random-weights model

The capacity phase is bench.capacity (also `make capacity`); the index build through the SQS path is
bench.stack.upload_and_index.
"""
