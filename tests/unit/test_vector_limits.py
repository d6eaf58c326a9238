"""pictrace.vectors within Amazon S3 Vectors' documented limits, against a test double that enforces them
(tests/s3vectors_fake.py: request shapes from botocore's service model, body sizes from botocore's serialiser)."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from botocore.exceptions import ParamValidationError
from pictrace.errors import BadRequest
from pictrace.index.vectors import (
    FILTERABLE_BUDGET,
    MAX_REQUEST_BYTES,
    METADATA_BUDGET,
    Item,
    VectorIndex,
    VectorRefused,
    folders,
    folders_within,
    metadata,
    refused_vector,
)

from tests.s3vectors_fake import MAX_FILTERABLE, MAX_METADATA, FakeS3Vectors

DIM = 2048
ARN = "arn:aws:s3vectors:us-east-1:123456789012:bucket/pictrace-vectors/index/images"


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def ident(i: int) -> str:
    return hashlib.sha256(str(i).encode()).hexdigest()


def index(dim: int = DIM, **fake: int) -> tuple[VectorIndex, FakeS3Vectors]:
    client = FakeS3Vectors(**fake)
    vectors = VectorIndex("pictrace-vectors", "images", client)
    vectors.create(dim)
    return vectors, client


def compact(value: object) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode())


def many_long_keys(n: int = 300) -> tuple[str, ...]:
    """An image stored under many deep, long keys (one folder tree per tenant and year)."""
    return tuple(
        f"images/tenant-{t:03d}-{'x' * 60}/{2000 + y}/{'album-' + 'y' * 80}-{y}/photo-{i:05d}-{'z' * 40}.jpg"
        for i, (t, y) in enumerate((t, y) for t in range(n // 10) for y in range(10))
    )


def test_folders_of_keys() -> None:
    assert folders(("images/a/b/c.jpg", "images/x.jpg", "top.jpg")) == ["images/", "images/a/", "images/a/b/"]


def test_an_image_with_many_long_keys_fits_the_metadata_limits_and_keeps_its_shallowest_folders() -> None:
    keys = many_long_keys()
    meta = metadata(keys)
    every = folders(keys)
    assert compact({"folders": every}) > MAX_FILTERABLE  # unbounded, the folders alone would be refused
    assert compact({"folders": meta["folders"]}) <= FILTERABLE_BUDGET < MAX_FILTERABLE
    assert compact(meta) <= METADATA_BUDGET < MAX_METADATA
    assert meta["folders"][0] == "images/" and "id" not in meta
    # the documented rule: shallowest first, then by name; whatever was left out is no shallower than what was kept
    kept = meta["folders"]
    assert kept == sorted(kept, key=lambda f: (f.count("/"), f))
    left_out = set(every) - set(kept)
    assert left_out and min(f.count("/") for f in left_out) >= max(f.count("/") for f in kept)
    assert meta["keys"] == sorted(keys)[: len(meta["keys"])] and 0 < len(meta["keys"]) < len(keys)
    # and the service (the double) takes it, with only `keys` declared non-filterable
    vectors, client = index()
    result = vectors.put([Item(ident(0), keys, unit(np.random.default_rng(0), 1)[0])])
    assert result.put == 1 and not result.refused
    stored = client.indexes[("pictrace-vectors", "images")]["vectors"][ident(0)]["metadata"]
    assert stored == meta


def test_few_short_keys_index_every_folder_and_keep_every_key() -> None:
    keys = ("images/2019/a.jpg", "images/2019/summer/b.jpg", "images/c.jpg")
    assert metadata(keys) == {"folders": ["images/", "images/2019/", "images/2019/summer/"], "keys": sorted(keys)}
    assert folders_within(keys, budget=len('{"folders": ["images/"]}')) == ["images/"]


def test_put_batches_are_cut_by_serialised_bytes_and_by_count() -> None:
    rng = np.random.default_rng(1)
    vectors, client = index()
    n = 600
    items = [Item(ident(i), (f"images/{i % 7}/{i}.jpg",), v) for i, v in enumerate(unit(rng, n))]
    one = len(json.dumps(items[0].request()))
    assert 500 * one > MAX_REQUEST_BYTES  # 500 × 2048-d float32 as JSON: over the limit, so count alone fails
    result = vectors.put(items)
    puts = [(params, size) for op, params, size in client.calls if op == "PutVectors"]
    assert result.put == n and not result.refused and result.requests == len(puts)
    assert all(len(p["vectors"]) <= 500 and size <= 18 * 2**20 for p, size in puts)
    assert len(puts) == 2 and sum(len(p["vectors"]) for p, _ in puts) == n
    assert len(client.indexes[("pictrace-vectors", "images")]["vectors"]) == n


def test_put_batches_of_small_vectors_stop_at_500() -> None:
    rng = np.random.default_rng(2)
    vectors, client = index(dim=8)
    result = vectors.put([Item(ident(i), (f"images/{i}.jpg",), v) for i, v in enumerate(unit(rng, 1201, 8))])
    assert [len(p["vectors"]) for op, p, _ in client.calls if op == "PutVectors"] == [500, 500, 201]
    assert result.put == 1201


def test_heavy_metadata_makes_batches_smaller_still() -> None:
    rng = np.random.default_rng(3)
    vectors, client = index()
    keys = many_long_keys(120)
    result = vectors.put([Item(ident(i), keys, v) for i, v in enumerate(unit(rng, 300))])
    sizes = [(len(p["vectors"]), size) for op, p, size in client.calls if op == "PutVectors"]
    assert result.put == 300 and all(size <= 18 * 2**20 for _, size in sizes) and max(n for n, _ in sizes) < 250
    assert len(sizes) >= 2


def test_zero_and_non_finite_vectors_are_refused_with_a_reason_and_the_rest_go_in() -> None:
    assert (
        refused_vector(np.zeros(DIM, np.float32))
        == "the embedding is all zeros (no cosine similarity is defined for it)"
    )
    bad = np.ones(DIM, np.float32)
    bad[3] = np.nan
    assert refused_vector(bad) is not None and refused_vector(np.ones(DIM, np.float32)) is None
    with pytest.raises(VectorRefused, match="all zeros"):
        Item(ident(0), ("images/0.jpg",), np.zeros(DIM, np.float32)).request()
    vectors, client = index()
    good = unit(np.random.default_rng(4), 2)
    result = vectors.put(
        [
            Item(ident(0), ("images/0.jpg",), good[0]),
            Item(ident(1), ("images/1.jpg",), np.zeros(DIM, np.float32)),
            Item(ident(2), ("images/2.jpg",), bad),
            Item(ident(3), ("images/3.jpg",), good[1]),
        ]
    )
    assert result.put == 2 and set(result.refused) == {ident(1), ident(2)}
    assert "all zeros" in result.refused[ident(1)]
    assert set(client.indexes[("pictrace-vectors", "images")]["vectors"]) == {ident(0), ident(3)}


def test_the_double_refuses_a_zero_vector_as_the_service_does() -> None:
    """What put's own check saves a request from: the service answers ValidationException."""
    _, client = index(dim=4)
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match="zero vectors"):
        client.put_vectors(
            vectorBucketName="pictrace-vectors",
            indexName="images",
            vectors=[{"key": "a", "data": {"float32": [0.0] * 4}}],
        )


def test_a_vector_the_service_refuses_is_isolated_and_the_others_are_written() -> None:
    rng = np.random.default_rng(5)
    vectors, client = index(dim=8)
    items = [Item(ident(i), (f"images/{i}.jpg",), v) for i, v in enumerate(unit(rng, 40, 8))]
    client.refuse = {ident(13), ident(29)}
    result = vectors.put(items)
    assert set(result.refused) == {ident(13), ident(29)} and result.put == 38
    assert "ValidationException" in result.refused[ident(13)]
    assert set(client.indexes[("pictrace-vectors", "images")]["vectors"]) == {i.id for i in items} - client.refuse
    assert result.requests <= 1 + 2 * 2 * 6  # halving: a few requests per poison item, not one per vector


def test_other_errors_are_raised_for_a_later_retry() -> None:
    from botocore.exceptions import ClientError

    vectors, client = index(dim=8)

    def throttled(**_: object) -> None:
        raise ClientError({"Error": {"Code": "TooManyRequestsException", "Message": "slow down"}}, "PutVectors")

    client.put_vectors = throttled  # type: ignore[method-assign]
    with pytest.raises(ClientError, match="TooManyRequests"):
        vectors.put([Item(ident(0), ("images/0.jpg",), unit(np.random.default_rng(6), 1, 8)[0])])


def test_queries_follow_next_token_and_filter_before_searching() -> None:
    rng = np.random.default_rng(7)
    vectors, client = index(dim=8, page=30, classic_window=10)
    vs = unit(rng, 300, 8)
    vectors.put(
        [Item(ident(i), (f"images/{'rare' if i % 10 == 0 else 'common'}/{i}.jpg",), v) for i, v in enumerate(vs)]
    )
    got = vectors.query(vs[1], 100)
    assert len(got) == 100 and got[0].id == ident(1) and got[0].cosine == pytest.approx(1.0, abs=1e-5)
    assert [n.cosine for n in got] == sorted((n.cosine for n in got), reverse=True)
    queries = [p for op, p, _ in client.calls if op == "QueryVectors"]
    assert len(queries) == 4 and [("nextToken" in p) for p in queries] == [False, True, True, True]
    assert {p["topK"] for p in queries} == {100}  # every page asks the same query
    client.calls.clear()
    rare = vectors.query(vs[1], 25, prefix="images/rare/")
    assert len(rare) == 25 and all(n.keys[0].startswith("images/rare/") for n in rare)
    first = next(p for op, p, _ in client.calls if op == "QueryVectors")
    assert first["filter"] == {"folders": {"$eq": "images/rare/"}} and first["queryMode"] == "ENHANCED"
    # what the index's own (CLASSIC) mode would have answered: fewer than asked
    query = {"float32": [float(x) for x in vs[1]]}
    where = {"vectorBucketName": "pictrace-vectors", "indexName": "images"}
    classic = client.query_vectors(**where, topK=25, queryVector=query, filter={"folders": {"$eq": "images/rare/"}})
    assert len(classic["vectors"]) < 25
    with pytest.raises(BadRequest, match="folder"):
        vectors.query(vs[1], 5, prefix="images/rare")


def test_top_k_is_capped_at_the_service_limit() -> None:
    vectors, client = index(dim=8, page=1000)
    vectors.put([Item(ident(i), ("images/a.jpg",), v) for i, v in enumerate(unit(np.random.default_rng(8), 3, 8))])
    assert len(vectors.query(unit(np.random.default_rng(9), 1, 8)[0], 50_000)) == 3
    assert [p["topK"] for op, p, _ in client.calls if op == "QueryVectors"] == [10_000]


def test_gets_and_deletes_are_batched_within_their_limits() -> None:
    rng = np.random.default_rng(10)
    vectors, client = index(dim=8)
    ids = [ident(i) for i in range(1234)]
    vectors.put(
        [Item(i, (f"images/{n}.jpg",), v) for n, (i, v) in enumerate(zip(ids, unit(rng, 1234, 8), strict=True))]
    )
    assert len(vectors.get(ids[:250])) == 250
    assert sorted(vectors.ids()) == sorted(ids)
    vectors.delete(ids[:1200])
    assert sorted(vectors.ids()) == sorted(ids[1200:])
    ops = [(op, len(p.get("keys", []))) for op, p, _ in client.calls]
    assert [n for op, n in ops if op == "GetVectors"] == [100, 100, 50]
    assert [n for op, n in ops if op == "DeleteVectors"] == [500, 500, 200]


def test_create_with_an_index_arn_names_the_bucket_and_the_index() -> None:
    client = FakeS3Vectors()
    VectorIndex("", ARN, client).create(8)
    create = next(p for op, p, _ in client.calls if op == "CreateIndex")
    assert "indexArn" not in create and create["indexName"] == "images"
    assert create["vectorBucketArn"] == ARN.partition("/index/")[0]
    assert ("pictrace-vectors", "images") in client.indexes
    with pytest.raises(ParamValidationError, match="indexArn"):  # what passing the index ARN gets from botocore
        client.create_index(indexArn=ARN, indexName="x", dataType="float32", dimension=8, distanceMetric="cosine")
    VectorIndex("", ARN, client).put([Item(ident(0), ("images/a.jpg",), unit(np.random.default_rng(11), 1, 8)[0])])
    assert ident(0) in client.indexes[("pictrace-vectors", "images")]["vectors"]
