"""Copies within the collection: GET /duplicates (the copy groups, a page at a time) and POST /duplicates/dismiss
(a pair marked not a copy). The groups come from the links each image's copy check recorded (pictrace.copies)."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from pictrace.copies import CopyLinks
from pictrace.duplicates import Duplicates, Group
from pictrace.routes.deps import Service, service_of
from pictrace.routes.models import ERRORS
from pictrace.search import SearchService

router = APIRouter()

Id = Annotated[str, Field(pattern="^[0-9a-f]{64}$", description="SHA-256 id of an indexed image")]


class MemberOut(BaseModel):
    id: str
    keys: list[str]
    url: str | None = Field(description="presigned link to the original image")
    created: str = Field(description="when it was indexed (ISO 8601): the group's first image is its oldest")


class LinkOut(BaseModel):
    a: str = Field(description="the image whose copy check found the link")
    b: str = Field(description="the copy it found")
    similarity: float = Field(description="as in search results: the calibrated chance of a copy, in percent")
    region: list[float] | None = Field(description="where a sits in b's pixels (x0, y0, x1, y1), where placed")
    found: str = Field(description="when the link was found (ISO 8601)")
    weak: bool = Field(
        description="the model alone found it, against the geometric check: it joins the two images only because "
        "another image in the group is linked to both"
    )


class GroupOut(BaseModel):
    images: list[MemberOut] = Field(description="the group's images, oldest first")
    links: list[LinkOut] = Field(description="the copies found between them, most similar first")


class DuplicatesResponse(BaseModel):
    groups: list[GroupOut]
    total: int = Field(description="groups in all (under the prefix)")
    images: int = Field(description="images in those groups")
    next: str | None = Field(description="the cursor of the next page; null on the last")


class DismissRequest(BaseModel):
    """JSON body of POST /duplicates/dismiss: two indexed images that are not copies of each other."""

    model_config = ConfigDict(extra="forbid")
    a: Id
    b: Id


class DismissResponse(BaseModel):
    a: str
    b: str
    dismissed: bool = Field(description="true: marked now; false: it was marked already")


def duplicates_of(request: Request) -> Duplicates:
    """The app's copy groups reader (made on first use; it keeps the links it read, by ETag)."""
    found: Duplicates | None = getattr(request.app.state, "duplicates", None)
    if found is None:
        svc = service_of(request)
        links = CopyLinks(svc.store, svc.layout, svc.settings.fetch_concurrency)
        found = request.app.state.duplicates = Duplicates(links, svc.backend.keys)
    return found


Groups = Annotated[Duplicates, Depends(duplicates_of)]


@router.get("/duplicates", response_model=DuplicatesResponse, responses=ERRORS)
async def duplicates(
    svc: Service,
    groups: Groups,
    prefix: str | None = Query(None, max_length=1024, description="only images with a key under this prefix"),
    limit: int = Query(50, ge=1, le=500, description="groups per page"),
    cursor: str | None = Query(None, max_length=512, description="the previous page's `next`"),
) -> DuplicatesResponse:
    """The copy groups: connected components of the copies found at ingest, less the pairs dismissed, each with its
    oldest image first, its images' keys and the similarity of each link."""
    await asyncio.to_thread(svc.backend.refresh)
    page = await asyncio.to_thread(groups.page, prefix, limit, cursor)
    return DuplicatesResponse(
        groups=[_group_out(g, svc) for g in page.groups], total=page.total, images=page.images, next=page.next
    )


@router.post("/duplicates/dismiss", response_model=DismissResponse, responses=ERRORS)
async def dismiss(body: DismissRequest, svc: Service, groups: Groups) -> DismissResponse:
    """Mark two indexed images as not copies of each other: the pair leaves the groups and stays out of them,
    whatever is reindexed (the mark is kept by their content ids)."""
    await asyncio.to_thread(svc.backend.refresh)
    marked = await asyncio.to_thread(groups.dismiss, body.a, body.b)
    return DismissResponse(a=body.a, b=body.b, dismissed=marked)


def _group_out(group: Group, svc: SearchService) -> GroupOut:
    return GroupOut(
        images=[
            MemberOut(id=m.id, keys=list(m.keys), url=svc.link(m.keys[0]) if m.keys else None, created=m.created)
            for m in group.members
        ],
        links=[
            LinkOut(
                a=k.a,
                b=k.b,
                similarity=k.similarity,
                region=list(k.region) if k.region else None,
                found=k.at,
                weak=k.weak,
            )
            for k in group.links
        ],
    )
