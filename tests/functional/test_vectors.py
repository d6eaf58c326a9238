"""The S3 Vectors backend (pictrace.vectors): put/get/delete/list against moto's server (the local stack), and
QueryVectors with botocore's Stubber, which checks each request against the real service model (moto's server
does not implement QueryVectors)."""

from __future__ import annotations

import uuid
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.stub import Stubber
from pictrace.errors import BadRequest
from pictrace.index import IndexStore
from pictrace.storage import Store
from pictrace.vectors import VectorIndex, folders, mirror, reconcile

from tests.functional.test_segments import DIM, entry, unit


@pytest.fixture
def vectors(stack: Any) -> VectorIndex:
    client = boto3.client("s3vectors", endpoint_url=stack.endpoint, region_name="us-east-1")
    index = VectorIndex(f"pictrace-vectors-{uuid.uuid4().hex[:8]}", "images", client)
    index.create(DIM)
    return index


def test_folders_of_keys() -> None:
    assert folders(("images/a/b/c.jpg", "images/x.jpg", "top.jpg")) == ["images/", "images/a/", "images/a/b/"]


def test_put_get_list_delete_against_the_local_server(vectors: VectorIndex) -> None:
    rng = np.random.default_rng(5)
    es = [entry(i, v, (f"images/{i % 2}/{i}.jpg",)) for i, v in enumerate(unit(rng, 7))]
    vectors.put(es)
    assert sorted(vectors.ids()) == sorted(e.id for e in es)
    assert vectors.get([es[0].id, "f" * 64]) == {es[0].id: ("images/0/0.jpg",)}
    vectors.put([entry(0, es[0].embedding, ("images/0/0.jpg", "images/copy/0.jpg"))])  # replaced, not added
    assert vectors.get([es[0].id]) == {es[0].id: ("images/0/0.jpg", "images/copy/0.jpg")}
    assert len(list(vectors.ids())) == 7
    vectors.delete([es[1].id, es[2].id])
    assert sorted(vectors.ids()) == sorted(e.id for e in es if e.id not in (es[1].id, es[2].id))


def test_ingest_changes_reach_the_vector_index_and_reconcile_repairs_what_was_missed(
    stack: Any, vectors: VectorIndex
) -> None:
    index_store = IndexStore(Store(stack.bucket), "index/")
    rng = np.random.default_rng(6)
    es = [entry(i, v, (f"images/{i}.jpg",)) for i, v in enumerate(unit(rng, 4))]
    for e in es:
        index_store.create_or_add_key(e, e.keys[0])
    assert mirror(vectors, index_store, [es[0].id]) == (1, 0)  # what ingest does after its change
    index_store.add_key(es[0].id, "images/more/0.jpg")
    index_store.remove_key("images/3.jpg")  # es[3] leaves the index
    vectors.put([es[3]])  # a stale vector, as if a mirror write had been lost
    done = reconcile(vectors, index_store)  # what the scheduled function does: every change marker
    assert done == {"put": 3, "deleted": 1, "markers_left": 0}
    assert vectors.get([e.id for e in es]) == {
        es[0].id: ("images/0.jpg", "images/more/0.jpg"),
        es[1].id: ("images/1.jpg",),
        es[2].id: ("images/2.jpg",),
    }
    assert reconcile(vectors, index_store) == {"put": 0, "deleted": 0, "markers_left": 0}


def test_query_is_a_valid_request_and_answers_cosine_with_keys() -> None:
    client = boto3.client("s3vectors", region_name="us-east-1")
    index = VectorIndex("pictrace-vectors", "images", client)
    q = np.zeros(DIM, np.float32)
    q[0] = 1.0
    ids = ["a" * 64, "b" * 64]
    answer = {
        "vectors": [
            {"key": ids[0], "distance": 0.0, "metadata": {"id": ids[0], "keys": ["images/t1/x.jpg"]}},
            {"key": ids[1], "distance": 0.25, "metadata": {"id": ids[1], "keys": ["images/t1/y.jpg"]}},
        ],
        "distanceMetric": "cosine",
    }
    with Stubber(client) as stub:
        stub.add_response(
            "query_vectors",
            answer,
            {
                "vectorBucketName": "pictrace-vectors",
                "indexName": "images",
                "topK": 100,  # QueryVectors' limit, whatever was asked
                "queryVector": {"float32": [float(x) for x in q]},
                "filter": {"folders": {"$eq": "images/t1/"}},
                "returnMetadata": True,
                "returnDistance": True,
            },
        )
        stub.add_response("query_vectors", {"vectors": [], "distanceMetric": "cosine"})
        got = index.query(q, 500, prefix="images/t1/")
        assert [(n.id, n.cosine, n.keys) for n in got] == [
            (ids[0], 1.0, ("images/t1/x.jpg",)),
            (ids[1], 0.75, ("images/t1/y.jpg",)),
        ]
        assert index.query(q, 5) == []
        stub.assert_no_pending_responses()
    with pytest.raises(BadRequest, match="folder"):
        index.query(q, 5, prefix="images/t1")


def test_ingest_and_compaction_keep_the_vector_index_in_step(
    stack: Any, vectors: VectorIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PICTRACE_INDEX_BACKEND=s3vectors: the ingest function mirrors each change at once, the compact function
    mirrors what its change markers name before it folds them into segments."""
    import hashlib

    import pictrace.ingest
    from pictrace.segments import compact
    from pictrace.settings import get_settings
    from pictrace.vectors import s3vectors_client

    from infra.local import SqsWorker, load_handler
    from tests.conftest import ROOT, read

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3VECTORS", stack.endpoint)
    monkeypatch.setenv("PICTRACE_INDEX_BACKEND", "s3vectors")
    monkeypatch.setenv("PICTRACE_VECTOR_BUCKET", vectors.bucket)
    get_settings.cache_clear()
    s3vectors_client.cache_clear()
    pictrace.ingest._ingestor = None
    vectors.client.delete_index(vectorBucketName=vectors.bucket, indexName="images")
    VectorIndex(vectors.bucket, "images", vectors.client).client.create_index(
        vectorBucketName=vectors.bucket, indexName="images", dataType="float32", dimension=2048,
        distanceMetric="cosine", metadataConfiguration={"nonFilterableMetadataKeys": ["keys"]},
    )  # fmt: skip
    worker = SqsWorker(stack, load_handler(ROOT / "functions/ingest/app.py"))
    s3 = stack.client("s3")
    s3.put_object(Bucket=stack.bucket, Key="images/t1/coffee.png", Body=read("coffee.png"))
    s3.put_object(Bucket=stack.bucket, Key="images/t2/rocket.bmp", Body=read("rocket.bmp"))
    worker.drain()
    coffee, rocket = (hashlib.sha256(read(n)).hexdigest() for n in ("coffee.png", "rocket.bmp"))
    assert vectors.get([coffee, rocket]) == {coffee: ("images/t1/coffee.png",), rocket: ("images/t2/rocket.bmp",)}
    vectors.delete([rocket])  # as if the ingest's mirror write had been lost
    result = compact()
    assert result.folded == 2 and result.segments == 1
    assert sorted(vectors.ids()) == sorted([coffee, rocket])
    s3.delete_object(Bucket=stack.bucket, Key="images/t1/coffee.png")
    worker.drain()
    assert list(vectors.ids()) == [rocket]
    get_settings.cache_clear()
    s3vectors_client.cache_clear()
    pictrace.ingest._ingestor = None


def test_search_with_the_s3_vectors_backend_shortlists_by_query_vectors(stack: Any) -> None:
    """index_backend=s3vectors: QueryVectors (stubbed: moto's server lacks it) gives the shortlist and the keys;
    the features still come from the entries in S3, and the rerank ranks the copy first."""
    import asyncio
    import hashlib

    from pictrace.ingest import Ingestor
    from pictrace.search import Query, SearchService
    from pictrace.settings import Settings, get_settings

    from tests.conftest import PHOTOS, read

    s3 = stack.client("s3")
    ingestor = Ingestor(get_settings())
    for name in PHOTOS:
        s3.put_object(Bucket=stack.bucket, Key=f"images/{name}", Body=read(name))
        assert ingestor.sync_key(f"images/{name}").action == "created"
    ids = [hashlib.sha256(read(n)).hexdigest() for n in PHOTOS]
    client = boto3.client("s3vectors", region_name="us-east-1")
    settings = Settings.from_env(index_backend="s3vectors", vector_bucket="pictrace-vectors")
    service = SearchService(settings, vectors=VectorIndex("pictrace-vectors", "images", client))
    # QueryVectors answers the five images, the queried photo last: the rerank must bring it to the top
    order = [*ids[1:], ids[0]]
    answer = {
        "vectors": [
            {"key": i, "distance": 0.1 + 0.01 * n, "metadata": {"id": i, "keys": [f"images/{PHOTOS[ids.index(i)]}"]}}
            for n, i in enumerate(order)
        ],
        "distanceMetric": "cosine",
    }
    with Stubber(client) as stub:
        stub.add_response("query_vectors", answer)
        stub.add_response("get_vectors", {"vectors": [{"key": ids[2], "metadata": {"keys": [f"images/{PHOTOS[2]}"]}}]})
        result = asyncio.run(service.search(Query(image=read(PHOTOS[0])), top_k=3))
        entry_ = asyncio.run(service.entry(ids[2]))
        stub.assert_no_pending_responses()
    assert result.results[0].id == ids[0] and result.results[0].keys == (f"images/{PHOTOS[0]}",)
    assert result.results[0].rank_cosine == 5 and result.indexed is None
    assert entry_.keys == (f"images/{PHOTOS[2]}",)
