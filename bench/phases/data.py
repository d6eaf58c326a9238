"""Phase "data": the originals (some held out of the index: their queries are the negatives) and the distractors
that fill the index up to the profile's size (same-domain photos first, then opencv-doc's images)."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NotRequired, TypedDict, cast

import numpy as np

from bench.common import SAMPLES, images_in
from bench.profile import Profile

#: opencv-doc's ~1,300 near-identical Doxygen class diagrams: distractors only once the others run out
DIAGRAM = re.compile(r"html_d._d.*_(class|struct)")


class DistractorStats(TypedDict):  # how the opencv-doc distractors were chosen
    available: int
    diagrams_available: int
    non_diagrams_available: int
    chosen: int
    diagrams_used: int
    same_bytes_as_an_original_skipped: int


class DataSummary(TypedDict):  # results.json's "data" (indexed, originals_not_indexed: once the index is built)
    originals: int
    originals_by_source: dict[str, int]
    originals_requirement_met: bool
    held_out: list[str]
    indexed_originals: int
    photo_distractors: int
    photo_distractors_by_source: dict[str, int]
    distractors: DistractorStats
    index_images: int
    index_entries: int
    indexed: NotRequired[int]
    originals_not_indexed: NotRequired[list[str]]


@dataclass(frozen=True)
class Dataset:  # the phase's result: the images and what the index will hold
    originals: list[Path]
    held_out: set[str]  # names of the originals kept out of the index
    indexed_originals: list[Path]
    original_ids: dict[str, str]  # name -> entry id
    files: dict[str, bytes]  # what the index is built from: S3 key -> bytes
    key_ids: dict[str, str]  # S3 key -> entry id
    summary: DataSummary


def pick_distractors(folder: Path, n: int, exclude: set[str]) -> tuple[list[Path], DistractorStats]:
    """n distractors, seeded shuffle, diagrams last; none with an original's bytes (exclude: ids)."""
    files, rng = images_in(folder), np.random.default_rng(0)
    plain, diagrams = [p for p in files if not DIAGRAM.search(p.name)], [p for p in files if DIAGRAM.search(p.name)]
    rng.shuffle(plain)
    rng.shuffle(diagrams)
    chosen: list[Path] = []
    seen, skipped_same = set(exclude), 0
    for p in [*plain, *diagrams]:
        if len(chosen) >= n:
            break
        if (digest := entry_id(p.read_bytes())) in seen:
            skipped_same += 1
        else:
            seen.add(digest)
            chosen.append(p)
    out = dict(available=len(files), diagrams_available=len(diagrams), non_diagrams_available=len(plain))
    out |= dict(chosen=len(chosen), diagrams_used=sum(1 for p in chosen if DIAGRAM.search(p.name)))
    return chosen, cast(DistractorStats, out | dict(same_bytes_as_an_original_skipped=skipped_same))


def by_source(paths: list[Path]) -> dict[str, int]:
    """How many files per source (the part of the name before the first '-')."""
    return dict(Counter(p.name.split("-", 1)[0] for p in paths))


def entry_id(body: bytes) -> str:
    """The id ingest gives these bytes."""
    return hashlib.sha256(body).hexdigest()


def choose_data(profile: Profile, samples: Path = SAMPLES) -> Dataset:
    """The run's images; SystemExit when there are no sample photos (`make samples`)."""
    originals = images_in(samples / "photos") + images_in(samples / "wallpapers")
    if not originals:
        raise SystemExit(f"no sample photos in {samples}: run `make samples`")
    # held out: every k-th by name, k = 1/share, so that every source gives some
    step = max(2, round(1 / profile.held_out_share)) if profile.held_out_share > 0 else 0
    held_out = {p.name for i, p in enumerate(originals) if step and i % step == step - 1}
    indexed_originals = [p for p in originals if p.name not in held_out]
    original_bytes = {p.name: p.read_bytes() for p in originals}
    original_ids = {name: entry_id(body) for name, body in original_bytes.items()}
    exclude = set(original_ids.values())
    room = max(0, profile.index_size - len(indexed_originals))
    same_domain = images_in(samples / "photo-distractors")
    photo_distractors = [p for p in same_domain if entry_id(p.read_bytes()) not in exclude][:room]
    distractors, dstats = pick_distractors(samples / "distractors", room - len(photo_distractors), exclude)
    files = {f"images/originals/{p.name}": original_bytes[p.name] for p in indexed_originals}
    files.update({f"images/photo-distractors/{p.name}": p.read_bytes() for p in photo_distractors})
    files.update({f"images/distractors/{p.name}": p.read_bytes() for p in distractors})
    key_ids = {key: entry_id(body) for key, body in files.items()}
    out: dict[str, Any] = dict(originals=len(originals), originals_by_source=by_source(originals))
    out |= dict(originals_requirement_met=len(originals) >= 50, held_out=sorted(held_out))
    out |= dict(indexed_originals=len(indexed_originals), photo_distractors=len(photo_distractors))
    out |= dict(photo_distractors_by_source=by_source(photo_distractors), distractors=dstats, index_images=len(files))
    summary = cast(DataSummary, out | dict(index_entries=len(set(key_ids.values()))))
    return Dataset(originals, held_out, indexed_originals, original_ids, files, key_ids, summary)
