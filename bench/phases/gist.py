"""Phase "gist question": does gist still add recall? Its fusion weight: the model's weights as fitted against the
same with gist 0, the rerank replayed on the recorded signals (its shortlist half is the quality summary's shortlist
sizes: product shortlist against cosine alone)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any, TypedDict

from bench import metrics
from bench.searching import SearchRecord

GistVerdict = TypedDict(
    "GistVerdict",
    {
        "fitted": dict[str, Any],  # pictrace.verdict's fusion weights as fitted
        "gist0": dict[str, Any],  # the same with gist 0
        "fitted_recall@1": dict[str, float],  # per family
        "fitted_micro_ap": float,
        "gist0_recall@1": dict[str, float],
        "gist0_micro_ap": float,
    },
)


def gist_verdict(records: Sequence[SearchRecord], verify: int, weights_name: str, preprocess: str) -> GistVerdict:
    """The rerank replayed with the fitted weights and with gist's weight at 0: recall@1 per family and µAP."""
    from pictrace.verdict import scoring_for

    fitted = scoring_for(weights_name, preprocess).fusion
    without = replace(fitted, gist=0.0)
    fitted_recall, fitted_micro = metrics.recall_and_micro_ap(metrics.replayed(records, fitted, verify))
    gist0_recall, gist0_micro = metrics.recall_and_micro_ap(metrics.replayed(records, without, verify))
    return {
        "fitted": asdict(fitted),
        "gist0": asdict(without),
        "fitted_recall@1": fitted_recall,
        "fitted_micro_ap": fitted_micro,
        "gist0_recall@1": gist0_recall,
        "gist0_micro_ap": gist0_micro,
    }
