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
from pictrace.index.store import IndexStore
from pictrace.index.vectors import VectorIndex, mirror, reconcile
from pictrace.storage import Store

from tests.functional.test_segments import DIM, entry, unit


@pytest.fixture
def model_dir() -> str:
    """Only two tests here embed images (they load the model and fail without it); the rest never do."""
    from tests.conftest import MODEL_DIR

    return str(MODEL_DIR)


@pytest.fixture
def vectors(stack: Any) -> VectorIndex:
    client = boto3.client("s3vectors", endpoint_url=stack.endpoint, region_name="us-east-1")
    index = VectorIndex(f"pictrace-vectors-{uuid.uuid4().hex[:8]}", "images", client)
    index.create(DIM)
    return index


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
    done = mirror(vectors, index_store, [es[0].id])  # what ingest does after its change
    assert (done.put, done.deleted, done.refused) == (1, 0, {})
    index_store.add_key(es[0].id, "images/more/0.jpg")
    index_store.remove_key("images/3.jpg")  # es[3] leaves the index
    vectors.put([es[3]])  # a stale vector, as if a mirror write had been lost
    done = reconcile(vectors, index_store)  # what the scheduled function does: every change marker
    assert done == {"put": 3, "deleted": 1, "refused": 0, "markers_left": 0}
    assert vectors.get([e.id for e in es]) == {
        es[0].id: ("images/0.jpg", "images/more/0.jpg"),
        es[1].id: ("images/1.jpg",),
        es[2].id: ("images/2.jpg",),
    }
    assert reconcile(vectors, index_store) == {"put": 0, "deleted": 0, "refused": 0, "markers_left": 0}


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
                "topK": 500,  # ≤ 10,000: answered in pages (none here: no nextToken)
                "queryVector": {"float32": [float(x) for x in q]},
                "filter": {"folders": {"$eq": "images/t1/"}},
                "queryMode": "ENHANCED",  # the filter applies before the search, whatever the index's mode
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
    import json

    from pictrace.index.vectors import s3vectors_client
    from pictrace.settings import get_settings
    from pictrace.wiring import compact

    from infra.local import SqsWorker, load_handler
    from tests.conftest import MODEL_DIR, ROOT, forget_container, read

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3VECTORS", stack.endpoint)
    monkeypatch.setenv("PICTRACE_INDEX_BACKEND", "s3vectors")
    monkeypatch.setenv("PICTRACE_VECTOR_BUCKET", vectors.bucket)
    get_settings.cache_clear()
    s3vectors_client.cache_clear()
    forget_container()
    dim = int(json.loads((MODEL_DIR / "model.json").read_text()).get("dim", 2048))  # the model's embedding width
    vectors.client.delete_index(vectorBucketName=vectors.bucket, indexName="images")
    VectorIndex(vectors.bucket, "images", vectors.client).client.create_index(
        vectorBucketName=vectors.bucket, indexName="images", dataType="float32", dimension=dim,
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
    forget_container()


def test_search_with_the_s3_vectors_backend_shortlists_by_query_vectors(stack: Any) -> None:
    """index_backend=s3vectors: QueryVectors (stubbed: moto's server lacks it) gives the shortlist and the keys;
    the features still come from the entries in S3, and the rerank ranks the copy first."""
    import asyncio
    import hashlib

    from pictrace.ingest import Ingestor
    from pictrace.search import SearchQuery, SearchService
    from pictrace.settings import Settings, get_settings
    from pictrace.wiring import wire

    from tests.conftest import PHOTOS, read

    s3 = stack.client("s3")
    ingestor = Ingestor(get_settings())
    for name in PHOTOS:
        s3.put_object(Bucket=stack.bucket, Key=f"images/{name}", Body=read(name))
        assert ingestor.sync_key(f"images/{name}").action == "created"
    ids = [hashlib.sha256(read(n)).hexdigest() for n in PHOTOS]
    client = boto3.client("s3vectors", region_name="us-east-1")
    settings = Settings.from_env(index_backend="s3vectors", vector_bucket="pictrace-vectors")
    service = SearchService(settings, wiring=wire(settings, vector_client=client))
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
        result = asyncio.run(service.search(SearchQuery(image=read(PHOTOS[0])), top_k=3))
        entry_ = asyncio.run(service.entry(ids[2]))
        stub.assert_no_pending_responses()
    assert result.results[0].id == ids[0] and result.results[0].keys == (f"images/{PHOTOS[0]}",)
    # the score's cosine is recomputed from each entry (whatever the service answered): the photo ranks first by it
    assert result.results[0].rank_cosine == 1 and result.indexed is None
    assert entry_.keys == (f"images/{PHOTOS[2]}",)


# ------------------------------------------------------------------ limits, poison items and the backfill
# (the double in tests/s3vectors_fake.py enforces the service's documented limits, which moto's server does not)


def _fake_backend(monkeypatch: pytest.MonkeyPatch, client: Any) -> None:
    """The settings name the s3vectors backend, and pictrace's s3vectors client is the double."""
    import pictrace.index.vectors
    from pictrace.settings import get_settings

    monkeypatch.setenv("PICTRACE_INDEX_BACKEND", "s3vectors")
    monkeypatch.setenv("PICTRACE_VECTOR_BUCKET", "pictrace-vectors")
    monkeypatch.setattr(pictrace.index.vectors, "s3vectors_client", lambda region=None: client)
    get_settings.cache_clear()


def test_a_poison_item_is_recorded_and_skipped_and_compaction_still_folds_every_marker(
    stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One vector the service refuses (ValidationException) and one all-zero embedding must not stall the
    scheduled compaction: the others reach the vector index, every marker goes, and the refusals are recorded."""
    import json

    from pictrace.settings import get_settings
    from pictrace.wiring import compact

    from tests.s3vectors_fake import FakeS3Vectors

    client = FakeS3Vectors()
    VectorIndex("pictrace-vectors", "images", client).create(DIM)
    _fake_backend(monkeypatch, client)
    index_store = IndexStore(Store(stack.bucket), "index/")
    rng = np.random.default_rng(11)
    es = [entry(i, v, (f"images/{i}.jpg",)) for i, v in enumerate(unit(rng, 12))]
    es[5] = entry(5, np.zeros(DIM, np.float32), ("images/5.jpg",))
    for e in es:
        index_store.create_or_add_key(e, e.keys[0])
    client.refuse = {es[8].id}
    result = compact()
    assert result.folded == 12 and result.markers_left == 0
    assert list(index_store.store.list(index_store.layout.changes_prefix)) == []
    stored = client.indexes[("pictrace-vectors", "images")]["vectors"]
    assert set(stored) == {e.id for e in es} - {es[5].id, es[8].id}
    records = {
        k.rsplit("/", 1)[-1].removesuffix(".json"): json.loads(index_store.store.get(k).body)["reason"]
        for k, _, _ in index_store.store.list(index_store.layout.vector_failures_prefix)
    }
    assert set(records) == {es[5].id, es[8].id}
    assert "all zeros" in records[es[5].id] and "ValidationException" in records[es[8].id]
    assert compact().folded == 0  # nothing left behind to retry forever
    get_settings.cache_clear()


def test_compaction_mirrors_a_large_fold_in_requests_within_the_limits(
    stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compactor mirrors all its changes at once: 600 2048-d vectors go in several PutVectors under 20 MiB."""
    from pictrace.settings import get_settings
    from pictrace.wiring import compact

    from tests.s3vectors_fake import FakeS3Vectors

    client = FakeS3Vectors()
    VectorIndex("pictrace-vectors", "images", client).create(2048)
    _fake_backend(monkeypatch, client)
    index_store = IndexStore(Store(stack.bucket), "index/")
    es = [entry(i, v, (f"images/{i % 9}/{i}.jpg",)) for i, v in enumerate(unit(np.random.default_rng(12), 600, 2048))]
    for e in es:
        index_store.store.put(index_store.layout.entry_key(e.id), e.to_bytes(), if_none_match=True)
        index_store.mark_changed(e.id)
    assert compact().folded == 600
    puts = [size for op, _, size in client.calls if op == "PutVectors"]
    assert len(puts) >= 2 and max(puts) <= 18 * 2**20
    assert len(client.indexes[("pictrace-vectors", "images")]["vectors"]) == 600
    get_settings.cache_clear()


def _indexed_then_switched(index_store: IndexStore, compacted: bool) -> dict[str, tuple[str, ...]]:
    """Images indexed (and compacted) before the backend was switched, then changed since; id -> keys now."""
    from pictrace.index.compaction import Compactor
    from pictrace.index.segments import SegmentStore

    from tests.functional.test_segments import add_images, truth

    vs = unit(np.random.default_rng(13), 40)
    add_images(index_store, vs, range(30))
    if compacted:
        Compactor(SegmentStore(index_store), segment_rows=12).compact()
    add_images(index_store, vs, range(30, 35))  # after the compaction: change markers
    index_store.add_key(entry(3, vs[3], ()).id, "images/more/3.jpg")
    index_store.remove_key("images/4.jpg")
    return truth(index_store)


@pytest.mark.parametrize("compacted", [True, False])
def test_backfill_mirrors_an_existing_index_into_an_empty_vector_index(
    stack: Any, vectors: VectorIndex, compacted: bool
) -> None:
    from pictrace.index.segments import SegmentedView, SegmentStore
    from pictrace.index.vectors import backfill

    index_store = IndexStore(Store(stack.bucket), "index/")
    expected = _indexed_then_switched(index_store, compacted)
    vectors.put([entry(999, unit(np.random.default_rng(14), 1)[0], ("images/gone.jpg",))])  # no longer indexed
    result = backfill(vectors, index_store, SegmentedView(SegmentStore(index_store)))
    assert result == {"indexed": 34, "put": 34, "requests": 1, "refused": 0, "deleted": 1}
    assert sorted(vectors.ids()) == sorted(expected)
    assert vectors.get(list(expected)) == expected
    assert backfill(vectors, index_store, SegmentedView(SegmentStore(index_store)))["deleted"] == 0  # idempotent


class _Ingest:
    """What ingest does to the index while a backfill runs: index or delete an image, then mirror that change at
    once through its own client of the same vector index (the backfill's VectorIndex may be wrapped by a test)."""

    def __init__(self, index_store: IndexStore, vectors: VectorIndex) -> None:
        self.index_store = index_store
        self.vectors = VectorIndex(vectors.bucket, vectors.index, vectors.client)
        self.embeddings = unit(np.random.default_rng(21), 50)

    def id(self, n: int) -> str:
        return entry(n, self.embeddings[n], ()).id

    def index(self, n: int) -> None:
        from tests.functional.test_segments import add_images

        add_images(self.index_store, self.embeddings, [n])
        mirror(self.vectors, self.index_store, [self.id(n)])

    def delete(self, n: int) -> None:
        self.index_store.remove_key(f"images/{n}.jpg")
        mirror(self.vectors, self.index_store, [self.id(n)])


def _backfill_in_step(vectors: VectorIndex, index_store: IndexStore) -> dict[str, tuple[str, ...]]:
    """Backfill, then check that the vector index holds exactly what the index holds now, each with its keys."""
    from pictrace.index.segments import SegmentedView, SegmentStore
    from pictrace.index.vectors import backfill

    from tests.functional.test_segments import truth

    backfill(vectors, index_store, SegmentedView(SegmentStore(index_store)))
    expected = truth(index_store)
    assert sorted(vectors.ids()) == sorted(expected)
    assert vectors.get(list(expected)) == expected
    return expected


@pytest.mark.parametrize("compacted", [True, False])
def test_backfill_keeps_the_vector_of_an_image_indexed_during_its_put_phase(
    stack: Any, vectors: VectorIndex, compacted: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 26: the ids live at the start are not what is pruned against; an image indexed (and mirrored by
    ingest) after the backfill read the index keeps its vector."""
    index_store = IndexStore(Store(stack.bucket), "index/")
    _indexed_then_switched(index_store, compacted)
    ingest = _Ingest(index_store, vectors)
    put = vectors.put

    def put_while_an_image_is_indexed(items: Any, budget: int = 18 * 2**20) -> Any:
        read = list(items)  # the backfill has read the index and its rows
        ingest.index(45)
        return put(read, budget)

    monkeypatch.setattr(vectors, "put", put_while_an_image_is_indexed)
    assert ingest.id(45) in _backfill_in_step(vectors, index_store)


@pytest.mark.parametrize("compacted", [True, False])
def test_backfill_does_not_bring_back_an_image_deleted_during_its_put_phase(
    stack: Any, vectors: VectorIndex, compacted: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 26: an image deleted (and its vector deleted by ingest) after the backfill read its row, but before
    the backfill put that row, loses the vector the backfill put for it."""
    index_store = IndexStore(Store(stack.bucket), "index/")
    _indexed_then_switched(index_store, compacted)
    ingest = _Ingest(index_store, vectors)
    put = vectors.put

    def put_while_an_image_is_deleted(items: Any, budget: int = 18 * 2**20) -> Any:
        read = list(items)  # image 7's row among them
        assert ingest.id(7) in {i.id for i in read}
        ingest.delete(7)
        return put(read, budget)

    monkeypatch.setattr(vectors, "put", put_while_an_image_is_deleted)
    assert ingest.id(7) not in _backfill_in_step(vectors, index_store)


def test_backfill_keeps_the_vector_of_an_image_indexed_while_it_lists_the_vectors(
    stack: Any, vectors: VectorIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The prune's listing of the vectors is long too (1,000 per request): an image indexed while it runs has a
    listed vector that is live, and keeps it (the index is read after the listing, not before)."""
    index_store = IndexStore(Store(stack.bucket), "index/")
    _indexed_then_switched(index_store, compacted=True)
    ingest = _Ingest(index_store, vectors)
    ids = vectors.ids

    def ids_while_an_image_is_indexed() -> Any:
        monkeypatch.setattr(vectors, "ids", ids)  # once
        ingest.index(46)
        yield from ids()

    monkeypatch.setattr(vectors, "ids", ids_while_an_image_is_indexed)
    assert ingest.id(46) in _backfill_in_step(vectors, index_store)


def test_pictrace_vectors_backfill_command(
    stack: Any, vectors: VectorIndex, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    import pictrace.index.vectors
    from pictrace import cli

    index_store = IndexStore(Store(stack.bucket), "index/")
    expected = _indexed_then_switched(index_store, compacted=True)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3VECTORS", stack.endpoint)
    pictrace.index.vectors.s3vectors_client.cache_clear()
    args = ["vectors-backfill", "--s3-endpoint", stack.endpoint, "--bucket", stack.bucket]
    assert cli.main([*args, "--json"]) == 2  # no vector index named
    assert "--vector-bucket" in capsys.readouterr().err
    code = cli.main([*args, "--vector-bucket", vectors.bucket, "--json"])
    pictrace.index.vectors.s3vectors_client.cache_clear()
    assert code == 0 and json.loads(capsys.readouterr().out)["indexed"] == len(expected)
    assert sorted(vectors.ids()) == sorted(expected) and vectors.get(list(expected)) == expected


def test_ingest_refuses_an_all_zero_embedding_and_records_why(stack: Any) -> None:
    """A zero vector has no cosine (S3 Vectors' cosine index refuses it): ingest records a failure, writes no entry."""
    from pictrace.ingest import Ingestor
    from pictrace.settings import get_settings

    from tests.conftest import read

    class ZeroEmbedder:
        weights, backend, dim, preprocess = "zero:0", "zero", DIM, "sscd-short288"

        def embed(self, images: list[np.ndarray]) -> np.ndarray:
            return np.zeros((len(images), DIM), np.float32)

    stack.client("s3").put_object(Bucket=stack.bucket, Key="images/zero.png", Body=read("coffee.png"))
    ingestor = Ingestor(get_settings(), embedder=ZeroEmbedder())  # type: ignore[arg-type]
    outcome = ingestor.sync_key("images/zero.png")
    assert outcome.action == "failed" and "all zeros" in (outcome.reason or "")
    assert (ingestor.index.failure("images/zero.png") or {}).get("reason") == outcome.reason
    assert list(ingestor.index.store.list(ingestor.index.layout.entries_prefix)) == []


def test_with_s3_vectors_health_and_search_never_load_the_in_memory_index(
    stack: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """IndexBackend=s3vectors: /health and /search answer from S3 Vectors alone; a Store that fails on any listing
    or manifest read under the index prefix (what loading the in-memory index starts with) is never asked."""
    import hashlib

    from fastapi.testclient import TestClient
    from pictrace.api import create_app
    from pictrace.index.backend import VectorsBackend
    from pictrace.ingest import Ingestor
    from pictrace.search import SearchService
    from pictrace.settings import get_settings

    from tests.conftest import read
    from tests.s3vectors_fake import FakeS3Vectors

    client = FakeS3Vectors()
    _fake_backend(monkeypatch, client)
    settings = get_settings()
    embedder = Ingestor(settings).embedder
    VectorIndex("pictrace-vectors", "images", client).create(embedder.dim)
    stack.client("s3").put_object(Bucket=stack.bucket, Key="images/coffee.png", Body=read("coffee.png"))
    assert Ingestor(settings, embedder=embedder).sync_key("images/coffee.png").action == "created"
    manifest = IndexStore(Store(stack.bucket), settings.index_prefix).layout.manifest_key

    class NoIndexLoading(Store):
        def list(self, prefix: str) -> Any:
            assert not prefix.startswith(settings.index_prefix), f"listed {prefix}"
            return super().list(prefix)

        def get(self, key: str) -> Any:
            assert key != manifest, "read the manifest"
            return super().get(key)

    service = SearchService(settings, store=NoIndexLoading(stack.bucket), embedder=embedder)
    assert isinstance(service.backend, VectorsBackend)
    with TestClient(create_app(settings, service)) as api:
        health = api.get("/health")
        assert health.status_code == 200 and health.json()["indexed"] is None
        found = api.post("/search", files={"file": ("q.png", read("coffee.png"), "image/png")})
    assert found.status_code == 200, found.text
    assert found.json()["results"][0]["id"] == hashlib.sha256(read("coffee.png")).hexdigest()
    get_settings.cache_clear()
