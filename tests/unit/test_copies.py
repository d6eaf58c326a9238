"""Copies within the collection without a network: the links' and dismissed pairs' keys, the links kept in a bucket
(conditional creates, both directions, forget, the ETag-kept reads), the groups (connected components less dismissed
pairs and images no longer indexed, oldest first, prefix, pages), ingest's hooks, the queue and the events."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from types import SimpleNamespace
from typing import Any, cast

import pytest
from pictrace.compare import Evidence
from pictrace.copies import (
    CheckRequest,
    CopyHooks,
    CopyLinks,
    Link,
    NoCheckQueue,
    SqsCheckQueue,
    open_check_queue,
    pair_of,
)
from pictrace.copycheck import is_weak
from pictrace.duplicates import Duplicates, copy_groups, page_of
from pictrace.errors import BadRequest, NotFound, UpstreamError
from pictrace.events import DETAIL_TYPE, SOURCE, CopyFound, EventBridgeEvents, NoEvents, open_events
from pictrace.index.layout import Layout
from pictrace.ingest import Ingestor, ingest_batch
from pictrace.settings import Settings
from pictrace.storage import Store

from tests.memstore import MemoryStore


def ids(*names: str) -> list[str]:
    return [hashlib.sha256(n.encode()).hexdigest() for n in names]


A, B, C, D, E = ids("a", "b", "c", "d", "e")


@pytest.fixture
def links() -> CopyLinks:
    return CopyLinks(MemoryStore(), Layout("index/"), workers=4)


def link(a: str, b: str, similarity: float = 99.0, created: tuple[str, str] = ("t1", "t2")) -> Link:
    return Link(a, b, similarity, created, (1.0, 2.0, 3.0, 4.0), "t9")


def test_the_layout_names_links_under_both_ids_and_dismissed_pairs_under_the_lower_first() -> None:
    layout = Layout("index/")
    assert layout.copy_pair(layout.copy_key(A, B)) == (A, B)
    assert layout.copy_key(A, B).startswith(layout.copies_of_prefix(A)) and layout.copies_of_prefix(A).startswith(
        layout.copies_prefix
    )
    assert layout.dismissed_key(A, B) == layout.dismissed_key(B, A)
    assert layout.dismissed_pair(layout.dismissed_key(B, A)) == pair_of(A, B)
    for other in (layout.entry_key(A), layout.copies_prefix + A, layout.dismissed_prefix + "x.json", "images/a.json"):
        assert layout.copy_pair(other) is None and layout.dismissed_pair(other) is None


def test_a_link_reads_back_as_written() -> None:
    written = link(B, A)
    assert Link.from_bytes(written.to_bytes()) == written
    assert written.pair == (A, B) if A < B else (B, A)
    assert (written.created_of(B), written.created_of(A)) == ("t1", "t2")
    assert Link.from_bytes(Link(A, B, 97.5).to_bytes()).region is None
    assert Link.from_bytes(Link(A, B, 60.0, weak=True).to_bytes()).weak is True
    before = json.loads(Link(A, B, 97.5).to_bytes())
    del before["weak"]  # a link recorded before weak links were told apart
    assert Link.from_bytes(json.dumps(before).encode()).weak is False


def test_a_weak_link_groups_only_images_that_share_a_linked_image() -> None:
    F, G = ids("f", "g")
    strong = [link(A, B), link(B, C), link(D, E)]
    weak = lambda a, b: replace(link(a, b, 50.0), weak=True)  # noqa: E731
    two = copy_groups([*strong, weak(C, D)], set(), keys(A, B, C, D, E))  # one look-alike pair does not merge
    assert sorted(sorted(m.id for m in g.members) for g in two) == sorted([sorted([A, B, C]), sorted([D, E])])
    assert not any(x.weak for g in two for x in g.links)
    backed = copy_groups([*strong, weak(A, C)], set(), keys(A, B, C, D, E))  # B backs it: it stays, shown weak
    group = next(g for g in backed if A in {m.id for m in g.members})
    assert sorted(m.id for m in group.members) == sorted([A, B, C]) and [x.weak for x in group.links].count(True) == 1
    assert copy_groups([weak(F, G)], set(), keys(F, G)) == []  # nothing backs it: no group
    assert len(copy_groups([replace(weak(F, G), weak=False)], set(), keys(F, G))) == 1


@pytest.mark.parametrize(
    ("cosine", "inliers", "degenerate", "points", "weak"),
    [
        (0.44, 0, False, (500, 500), True),  # a texture recoloured alike: nothing agrees
        (0.51, 6, False, (500, 480), True),
        (0.51, 30, True, (500, 480), True),  # a degenerate transform's inliers do not count
        (0.51, 8, False, (500, 480), False),  # enough agree
        (0.60, 0, False, (500, 500), False),  # the model is sure enough alone
        (0.44, 0, False, (500, 11), False),  # too few keypoints to judge by
    ],
)
def test_a_copy_is_weak_when_the_geometric_check_could_judge_it_and_disagrees(
    cosine: float, inliers: int, degenerate: bool, points: tuple[int, int], weak: bool
) -> None:
    found = cast(Evidence, SimpleNamespace(inliers=inliers, degenerate=degenerate))
    assert is_weak(cosine, found, points) is weak
    assert is_weak(cosine, None, points) is False  # not checked: nothing disagrees


def test_links_are_written_both_ways_once_and_forgotten_with_either_image(links: CopyLinks) -> None:
    first, again = link(A, B, 99.0), link(B, A, 50.0)
    links.record([first])
    links.record([again, link(A, C)])  # a second finding of the pair changes nothing
    assert links.of(A) == {B, C} and links.of(B) == {A} and links.of(C) == {A}
    assert {(x.pair, x.similarity) for x in links.all()} == {(pair_of(A, B), 99.0), (pair_of(A, C), 99.0)}
    assert links.forget(A) == 2
    assert links.of(A) == links.of(B) == links.of(C) == set() and links.all() == []
    assert links.forget(A) == 0


def test_all_reads_only_what_changed_since_and_a_link_written_one_way_only(links: CopyLinks) -> None:
    store = links.store
    assert isinstance(store, MemoryStore)
    links.record([link(A, B), link(C, D)])
    assert len(links.all()) == 2 and store.gets == 2  # one GET per pair
    assert len(links.all()) == 2 and store.gets == 2  # nothing changed: none
    store.delete(links.layout.copy_key(*pair_of(C, D)))  # a check stopped between its two writes
    (found,) = [x for x in links.all() if x.pair == pair_of(C, D)]
    assert found == link(C, D) and store.gets == 3
    links.unlink([(A, B)])
    assert [x.pair for x in links.all()] == [pair_of(C, D)]


def test_dismissed_pairs_are_kept_by_their_ids_in_either_order(links: CopyLinks) -> None:
    assert links.dismiss(B, A) is True and links.dismiss(A, B) is False
    assert links.dismissed() == {pair_of(A, B)}
    assert links.is_dismissed(A, B) and links.is_dismissed(B, A) and not links.is_dismissed(A, C)
    links.forget(A)  # an image leaving takes its links, never its dismissals
    assert links.dismissed() == {pair_of(A, B)}


def test_few_dismissed_pairs_are_listed_and_many_are_not(links: CopyLinks) -> None:
    """A copies batch lists the marks while they are few (one LIST), and asks per pair past that."""
    assert links.few_dismissed(2) == set()
    links.dismiss(A, B)
    links.dismiss(C, A)
    assert links.few_dismissed(2) == {pair_of(A, B), pair_of(A, C)}
    links.dismiss(D, E)
    assert links.few_dismissed(2) is None and len(links.dismissed()) == 3


def keys(*entries: str, folder: str = "images/") -> dict[str, tuple[str, ...]]:
    return {e: (f"{folder}{e[:6]}.jpg",) for e in entries}


def test_groups_are_connected_components_oldest_first_without_dismissed_pairs_or_unindexed_images() -> None:
    chain = [link(C, A, 90, ("2026-03", "2026-01")), link(C, B, 80, ("2026-03", "2026-02")), link(D, E, 70)]
    (group, other) = copy_groups(chain, set(), keys(A, B, C, D, E))
    assert [m.id for m in group.members] == [A, B, C]  # by when each was indexed
    assert [m.created for m in group.members] == ["2026-01", "2026-02", "2026-03"]
    assert [x.similarity for x in group.links] == [90, 80]  # most similar first
    assert sorted(m.id for m in other.members) == sorted([D, E])
    split = copy_groups(chain, {pair_of(C, B)}, keys(A, B, C, D, E))
    assert sorted(sorted(m.id for m in g.members) for g in split) == sorted([sorted([A, C]), sorted([D, E])])
    cycle = [*chain, link(A, B, 60, ("2026-01", "2026-02"))]
    (group, _) = copy_groups(cycle, {pair_of(C, B)}, keys(A, B, C, D, E))  # still linked through A
    assert [m.id for m in group.members] == [A, B, C] and len(group.links) == 2
    assert len(copy_groups(chain, set(), keys(A, B, D, E))) == 1  # C is not indexed: A and B are not linked


def test_a_prefix_keeps_the_images_with_a_key_under_it() -> None:
    held = {**keys(A, B, folder="images/x/"), **keys(C, folder="images/y/"), D: ("images/y/d.jpg", "images/x/d.jpg")}
    chain = [link(A, B), link(B, C), link(C, D)]
    assert [sorted(m.id for m in g.members) for g in copy_groups(chain, set(), held, "images/x/")] == [sorted([A, B])]
    assert [len(g.members) for g in copy_groups(chain, set(), held, "images/y/")] == [2]
    assert [len(g.members) for g in copy_groups(chain, set(), held, "images/")] == [4]


def test_pages_cover_every_group_once_in_order() -> None:
    all_ids = ids(*(str(n) for n in range(12)))
    chain = [link(all_ids[n], all_ids[n + 1], created=(f"t{n:02}", f"t{n + 1:02}")) for n in range(0, 12, 2)]
    groups = copy_groups(chain, set(), keys(*all_ids))
    seen, cursor = [], None
    while True:
        page = page_of(groups, 4, cursor)
        assert page.total == 6 and page.images == 12
        seen.extend(g.members[0].id for g in page.groups)
        cursor = page.next
        if cursor is None:
            break
    assert seen == [all_ids[n] for n in range(0, 12, 2)]
    with pytest.raises(BadRequest):
        page_of(groups, 4, "not a cursor")


def test_dismiss_wants_two_indexed_images(links: CopyLinks) -> None:
    indexed = keys(A, B)
    duplicates = Duplicates(links, lambda wanted: {i: indexed[i] for i in wanted if i in indexed})
    with pytest.raises(BadRequest):
        duplicates.dismiss(A, A)
    with pytest.raises(NotFound):
        duplicates.dismiss(A, C)
    assert duplicates.dismiss(A, B) is True
    links.record([link(A, B)])
    assert duplicates.page().groups == []


def test_ingest_queues_new_entries_and_an_entry_that_goes_takes_its_links(links: CopyLinks) -> None:
    class Queue:
        def __init__(self) -> None:
            self.queued: list[str] = []

        def enqueue(self, ids: Any, announce: bool = True) -> int:
            self.queued.extend(ids)
            return len(ids)

    queue = Queue()
    hooks = CopyHooks(links, queue)
    for action in ("created", "unchanged", "added", "failed", "removed"):
        hooks.indexed(action, A)
    hooks.indexed("created", None)
    assert queue.queued == [A, A]
    links.record([link(A, B)])
    hooks.removed(A, "removed")  # a key went; the entry stays
    assert links.of(A) == {B}
    hooks.removed(A, "deleted")
    assert links.of(A) == links.of(B) == set()


class Recorder:
    """A boto3 client stand-in recording its calls; `answer` is what each call returns."""

    def __init__(self, answer: dict[str, Any]) -> None:
        self.calls: list[dict[str, Any]] = []
        self.answer = answer

    def send_message_batch(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return self.answer

    def put_events(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        return self.answer


def test_the_queue_sends_ten_ids_a_message_batch_and_says_when_sqs_refuses() -> None:
    sent = Recorder({"Successful": []})
    assert SqsCheckQueue("https://queue", sent).enqueue(ids(*(str(n) for n in range(23)))) == 23
    assert [len(c["Entries"]) for c in sent.calls] == [10, 10, 3]
    first = sent.calls[0]["Entries"][0]
    assert sent.calls[0]["QueueUrl"] == "https://queue"
    assert CheckRequest.from_body(json.loads(first["MessageBody"])) == CheckRequest(ids("0")[0], announce=True)
    SqsCheckQueue("https://queue", sent).enqueue([A], announce=False)
    assert CheckRequest.from_body(json.loads(sent.calls[-1]["Entries"][0]["MessageBody"])) == CheckRequest(A, False)
    with pytest.raises(UpstreamError):
        SqsCheckQueue("https://queue", Recorder({"Failed": [{"Id": "0"}]})).enqueue([A])
    assert isinstance(open_check_queue(Settings(bucket="b")), NoCheckQueue)
    assert isinstance(open_check_queue(Settings(bucket="b", copies_queue_url="https://q")), SqsCheckQueue)


def test_a_held_queue_sends_its_ids_together_when_let_go_and_none_after_an_error() -> None:
    sent = Recorder({"Successful": []})
    queue = SqsCheckQueue("https://queue", sent)
    with queue.held():
        queue.enqueue([A])
        with queue.held():  # part of the outer one
            queue.enqueue([B, C])
        assert sent.calls == []
    assert [[json.loads(e["MessageBody"])["id"] for e in c["Entries"]] for c in sent.calls] == [[A, B, C]]
    with pytest.raises(RuntimeError), queue.held():
        queue.enqueue([D])
        raise RuntimeError("the batch failed: its redelivery queues D again")
    assert len(sent.calls) == 1
    queue.enqueue([E])  # not held: sent at once
    assert len(sent.calls) == 2
    with NoCheckQueue().held():
        assert NoCheckQueue().enqueue([A]) == 0


def test_an_ingest_batch_sends_the_ids_it_queues_one_request_per_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    sent = Recorder({"Successful": []})
    monkeypatch.setattr("pictrace.queues.sqs_client", lambda: sent)
    urls = {"copies_queue_url": "https://copies", "details_queue_url": "https://details"}
    ingestor = Ingestor(Settings(bucket="b", **urls), store=Store("b", client=object()))
    with ingest_batch({"Records": []}, ingestor):
        for entry_id in (A, B, C):
            ingestor.copies.indexed("created", entry_id)
            ingestor.details.indexed("created", entry_id)
        assert sent.calls == []
    assert sorted((c["QueueUrl"], len(c["Entries"])) for c in sent.calls) == [
        ("https://copies", 3),
        ("https://details", 3),
    ]


@pytest.mark.parametrize("body", [{"id": "A" * 64}, {"id": "a" * 63}, {"key": "images/a.jpg"}, [A], "x", None])
def test_a_message_that_names_no_image_is_refused(body: Any) -> None:
    with pytest.raises(ValueError):
        CheckRequest.from_body(body)


def test_one_event_per_copy_ten_a_call_and_a_refusal_is_an_error() -> None:
    found = [CopyFound(A, ("images/a.jpg",), o, ("images/o.jpg",), 99.5, "bucket") for o in ids(*"0123456789x")]
    put = Recorder({"FailedEntryCount": 0})
    assert EventBridgeEvents("bus", put).announce(found) == 11
    assert [len(c["Entries"]) for c in put.calls] == [10, 1]
    entry = put.calls[0]["Entries"][0]
    assert (entry["Source"], entry["DetailType"], entry["EventBusName"]) == (SOURCE, DETAIL_TYPE, "bus")
    detail = json.loads(entry["Detail"])
    assert detail["id"] == A and detail["copy_of"] == found[0].copy_of and detail["keys"] == ["images/a.jpg"]
    assert detail["pair"] == "-".join(pair_of(A, found[0].copy_of)) and detail["region"] is None
    refused = Recorder({"FailedEntryCount": 1, "Entries": [{"ErrorCode": "X", "ErrorMessage": "no"}]})
    with pytest.raises(UpstreamError):
        EventBridgeEvents("bus", refused).announce(found[:1])
    assert isinstance(open_events(Settings(bucket="b")), NoEvents)
    assert isinstance(open_events(Settings(bucket="b", event_bus="pictrace")), EventBridgeEvents)


class FailingStore(MemoryStore):
    """A bucket whose writes to one key fail (a check stopped there)."""

    def __init__(self, failing: str) -> None:
        super().__init__()
        self.failing = failing

    def put(self, key: str, body: bytes, **kwargs: Any) -> bool:
        if key == self.failing:
            raise UpstreamError("the bucket failed")
        return super().put(key, body, **kwargs)


def test_a_link_is_written_under_the_finder_last_so_a_stopped_check_is_redone() -> None:
    layout = Layout("index/")
    store = FailingStore(layout.copy_key(A, B))
    links = CopyLinks(store, layout, workers=2)
    with pytest.raises(UpstreamError):
        links.record([link(A, B)])  # A's check found B: under B first, then under A
    assert links.of(B) == {A} and links.of(A) == set()  # A's check sees no link: its redelivery writes it again
    store.failing = ""
    links.record([link(A, B)])
    assert links.of(A) == {B} and links.of(B) == {A} and [x.pair for x in links.all()] == [pair_of(A, B)]
