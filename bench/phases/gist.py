"""Phase "gist question": does gist still add recall? The rerank replayed on the recorded signals with the model's
fusion weights as fitted and with gist's at 0."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any, TypedDict, cast

from bench import metrics
from bench.searching import SearchRecord

#: fitted: pictrace.verdict's fusion weights as fitted; gist0: the same with gist 0; recall@1 per family
GistVerdict = TypedDict(
    "GistVerdict",
    {
        "fitted": dict[str, Any],
        "gist0": dict[str, Any],
        "fitted_recall@1": dict[str, float],
        "fitted_micro_ap": float,
        "gist0_recall@1": dict[str, float],
        "gist0_micro_ap": float,
    },
)


def gist_verdict(records: Sequence[SearchRecord], verify: int, weights_name: str, preprocess: str) -> GistVerdict:
    """The rerank replayed with the fitted weights and with gist's weight at 0: recall@1 per family and µAP."""
    from pictrace.verdict import scoring_for

    fitted = scoring_for(weights_name, preprocess).fusion
    fusions = {"fitted": fitted, "gist0": replace(fitted, gist=0.0)}
    out: dict[str, Any] = {name: asdict(fusion) for name, fusion in fusions.items()}
    for name, fusion in fusions.items():
        recall, micro = metrics.recall_and_micro_ap(metrics.replayed(records, fusion, verify))
        out |= {f"{name}_recall@1": recall, f"{name}_micro_ap": micro}
    return cast(GistVerdict, out)
