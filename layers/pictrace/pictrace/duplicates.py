"""Copy groups: the connected components of the copy relation (the links pictrace.copies records, less the pairs
marked not a copy, the links to images no longer indexed, and the weak links whose two images share no linked image),
each with its oldest image first, in pages of a stable order (oldest first image first); a prefix keeps the images
with a key under it, as search does.

A weak link (the model's call against the geometric check: pictrace.copycheck.is_weak) would let one look-alike pair
merge two groups of unrelated photos; it counts only where a third image linked to both backs it."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from pictrace.copies import CopyLinks, Link, Pair
from pictrace.errors import BadRequest, NotFound

Keys = Mapping[str, tuple[str, ...]]  # id -> the keys the index has for it now (indexed ids only)


@dataclass(frozen=True)
class Member:
    """An image of a group: its id, keys, and when it was indexed."""

    id: str
    keys: tuple[str, ...]
    created: str


@dataclass(frozen=True)
class Group:
    """Images linked as copies, oldest first, with the links between them, most similar first."""

    members: tuple[Member, ...]
    links: tuple[Link, ...]

    @property
    def order(self) -> tuple[str, str]:
        """Where the group sits among groups: its oldest image's time and id."""
        return (self.members[0].created, self.members[0].id)


@dataclass(frozen=True)
class GroupsPage:
    """One page of groups; total: groups in all, images: the images in them; next: the cursor of the next page
    (None on the last)."""

    groups: list[Group]
    total: int
    images: int
    next: str | None


def copy_groups(links: Iterable[Link], dismissed: set[Pair], keys: Keys, prefix: str | None = None) -> list[Group]:
    """The connected components of the links between indexed images (under the prefix) that are not dismissed, weak
    links counting only between two images linked to one same image."""

    def kept(entry_id: str) -> bool:
        held = keys.get(entry_id)
        return held is not None and (not prefix or any(k.startswith(prefix) for k in held))

    live = [link for link in links if link.pair not in dismissed and kept(link.a) and kept(link.b)]
    linked: dict[str, set[str]] = {}
    for link in live:
        linked.setdefault(link.a, set()).add(link.b)
        linked.setdefault(link.b, set()).add(link.a)
    live = [link for link in live if not link.weak or linked[link.a] & linked[link.b]]
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for link in live:
        parent[root(link.a)] = root(link.b)
    created: dict[str, str] = {}
    for link in live:
        for i in (link.a, link.b):
            when = link.created_of(i)
            created[i] = min(created.get(i, when), when)
    members: dict[str, list[Member]] = {}
    for i in parent:
        members.setdefault(root(i), []).append(Member(i, keys[i], created.get(i, "")))
    inside: dict[str, list[Link]] = {}
    for link in live:
        inside.setdefault(root(link.a), []).append(link)
    groups = [
        Group(
            tuple(sorted(found, key=lambda m: (m.created, m.id))),
            tuple(sorted(inside[r], key=lambda link: (-link.similarity, link.pair))),
        )
        for r, found in members.items()
    ]
    return sorted(groups, key=lambda g: g.order)


def page_of(groups: list[Group], limit: int, cursor: str | None = None) -> GroupsPage:
    """The `limit` groups after the cursor's (from the first without one)."""
    after = _decode(cursor) if cursor else None
    rest = [g for g in groups if after is None or g.order > after]
    shown = rest[:limit]
    more = len(rest) > limit
    return GroupsPage(
        shown, len(groups), sum(len(g.members) for g in groups), _encode(shown[-1].order) if more else None
    )


def _encode(order: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(order)).encode()).decode().rstrip("=")


def _decode(cursor: str) -> tuple[str, str]:
    try:
        created, entry_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return str(created), str(entry_id)
    except (binascii.Error, ValueError, TypeError):
        raise BadRequest("cursor is not one a previous page gave") from None


class Duplicates:
    """An index's copy groups as a reader sees them: the links and dismissed pairs in its bucket, and the keys of
    the indexed images as its shortlist backend has them now (keys_of)."""

    def __init__(self, links: CopyLinks, keys_of: Callable[[list[str]], dict[str, tuple[str, ...]]]) -> None:
        self.links = links
        self.keys_of = keys_of

    def page(self, prefix: str | None = None, limit: int = 50, cursor: str | None = None) -> GroupsPage:
        """One page of the groups (under the prefix)."""
        links = self.links.all()
        keys = self.keys_of(sorted({i for link in links for i in (link.a, link.b)}))
        return page_of(copy_groups(links, self.links.dismissed(), keys, prefix), limit, cursor)

    def dismiss(self, a: str, b: str) -> bool:
        """Mark two indexed images as not copies of each other (BadRequest for one image twice, NotFound for an
        image not indexed); False if they were marked already."""
        if a == b:
            raise BadRequest("give two different images")
        missing = sorted({a, b} - set(self.keys_of([a, b])))
        if missing:
            raise NotFound(f"no indexed image with id {missing[0]}")
        return self.links.dismiss(a, b)
