"""`python -m bench.fit_fusion` (`make fit-fusion`): per model, fit the fusion weights (a grid, the rerank replayed on
a bench run's recorded signals), the logistic curve to P(copy) and the 99 %-precision threshold on half of the
queries (split by original), report them on the other half, and write calibration.json (pictrace.verdict's format)
and bench/fusion.json. docs/scoring.md describes the fit."""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from pictrace.verdict import CALIBRATION_FILE, Weights

from bench import metrics

ROOT = Path(__file__).resolve().parent.parent
SIGNALS_DIR = ROOT / "build" / "bench"
REPORT = ROOT / "bench" / "fusion.json"
PRECISION = 0.99
GIST = (0.0, 0.1, 0.25, 0.5)
SSIM = (0.0, 0.1, 0.25, 0.5, 1.0)
GEOMETRY = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)


def split(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(fit, report): records of the originals at even / odd positions of the sorted original names."""
    names = sorted({r["original"] for r in records})
    even = {n for i, n in enumerate(names) if i % 2 == 0}
    return [r for r in records if r["original"] in even], [r for r in records if r["original"] not in even]


def grid() -> list[Weights]:
    """Candidate weights: cosine 1 (or 0) and the others relative to it."""
    product = itertools.product((1.0, 0.0), GIST, SSIM, GEOMETRY)
    return [Weights(cosine=c, gist=g, ssim=s, geometry=geo) for c, g, s, geo in product if c + g + s + geo > 0]


def evaluate(records: list[dict[str, Any]], w: Weights, verify: int) -> dict[str, Any]:
    """recall@1 per family, its minimum, and µAP of the records re-ranked under w."""
    recall, micro = metrics.recall_and_micro_ap(metrics.replayed(records, w, verify))
    return {"recall@1": recall, "min_recall@1": min(recall.values(), default=math.nan), "micro_ap": micro}


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-3, iterations: int = 50) -> tuple[float, float]:
    """a, b of P(y) = 1 / (1 + exp(-(a x + b))) by Newton's method, with a small L2 penalty (finite a and b even
    when the classes are separable)."""
    design = np.stack([x, np.ones_like(x)], axis=1)
    beta = np.zeros(2)
    for _ in range(iterations):
        z = np.clip(design @ beta, -60, 60)
        p = 1 / (1 + np.exp(-z))
        gradient = design.T @ (y - p) - l2 * beta
        hessian = design.T @ (design * (p * (1 - p))[:, None]) + l2 * np.eye(2)
        step = np.linalg.solve(hessian, gradient)
        beta += step
        if np.abs(step).max() < 1e-9:
            break
    return float(beta[0]), float(beta[1])


def verdict_at(records: list[dict[str, Any]], threshold: float) -> dict[str, float]:
    """Precision and recall of 'final >= threshold' over the records' top-10 predictions."""
    positives = sum(1 for r in records if r["positive"])
    called = [(s >= threshold, c) for s, c in metrics.predictions(records)]
    return metrics.verdict_quality(called, positives)


def fit_model(label: str, records: list[dict[str, Any]], verify: int) -> dict[str, Any]:
    """Everything fitted for one model, and how it does on the other half."""
    fit, held = split(records)
    scored = [(evaluate(fit, w, verify), w) for w in grid()]
    on_fit, weights = max(scored, key=lambda rw: (round(rw[0]["min_recall@1"], 6), round(rw[0]["micro_ap"], 6)))
    fit_ranked, held_ranked = metrics.replayed(fit, weights, verify), metrics.replayed(held, weights, verify)
    pooled = metrics.predictions(fit_ranked)
    a, b = fit_logistic(np.array([s for s, _c in pooled]), np.array([float(c) for _s, c in pooled]))
    threshold = metrics.threshold_for_precision(pooled, PRECISION)
    threshold = threshold if math.isfinite(threshold) else 1.01  # nothing reaches the precision: no copy called
    counts = {
        side: {"positive": sum(r["positive"] for r in rs), "negative": sum(not r["positive"] for r in rs)}
        for side, rs in (("fit", fit), ("report", held))
    }
    on_held = {**evaluate(held, weights, verify), "verdict": verdict_at(held_ranked, threshold)}
    fitted = {"label": label, "weights": weights.__dict__, "a": a, "b": b, "threshold": threshold, "queries": counts}
    return {**fitted, "fit": {**on_fit, "verdict": verdict_at(fit_ranked, threshold)}, "report": on_held}


def signals_file(explicit: str | None) -> Path:
    """The signals to fit on: the given file, else the full run's, else the quick run's (made if missing)."""
    if explicit:
        return Path(explicit)
    for name in ("signals-full.json", "signals-quick.json"):
        if (SIGNALS_DIR / name).is_file():
            return SIGNALS_DIR / name
    print("no bench signals yet: running the quick bench first (python -m bench.run --quick)", flush=True)
    subprocess.run([sys.executable, "-m", "bench.run", "--quick"], cwd=ROOT, check=True)
    return SIGNALS_DIR / "signals-quick.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--signals", help="a bench run's signals file (default: build/bench/signals-*.json)")
    parser.add_argument("--out", default=str(CALIBRATION_FILE), help="the calibration file to write")
    args = parser.parse_args(argv)
    path = signals_file(args.signals).resolve()
    data = json.loads(path.read_text())
    verify, now = int(data["verify"]), dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    kept = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}  # region rules: fitted apart
    calibration: dict[str, Any] = {}
    report: dict[str, Any] = {"signals": str(path.relative_to(ROOT)), "commit": data.get("commit"), "models": {}}
    for label, records in data["models"].items():
        scoring = data["scorings"][label]  # the model's calibration name and the centre its cosines were centred on
        report["models"][label] = fitted = fit_model(label, records, verify)
        on_fit, held, (n_fit, n_held) = fitted["fit"]["verdict"], fitted["report"], fitted["queries"].values()
        figures = f"precision {held['verdict']['precision']:.3f}, recall {held['verdict']['recall']:.3f}, µAP "
        figures += f"{held['micro_ap']:.3f}, min family recall@1 {held['min_recall@1']:.3f}"
        calibration[scoring["model"]] = {
            "centre": [round(float(x), 6) for x in scoring["centre"]],
            "fusion": fitted["weights"],
            **{k: round(fitted[k], n) for k, n in (("a", 4), ("b", 4), ("threshold", 5))},
            **{k: round(on_fit[k], 4) for k in ("precision", "recall")},
            "fitted": f"make fit-fusion {now} on the {data['profile']} bench of commit {data.get('commit')} "
            f"({scoring['model'].partition('/')[2]} preprocessing): fitted on {n_fit['positive']} edited copies + "
            f"{n_fit['negative']} negatives; on the other half ({held['verdict']['called']} called, "
            f"{n_held['positive']} + {n_held['negative']} queries) {figures}",
        } | ({"region": rule} if (rule := kept.get(scoring["model"], {}).get("region")) else {})
        print(f"{label}: weights {fitted['weights']}, a {fitted['a']:.2f}, b {fitted['b']:.2f}, threshold ", end="")
        print(f"{fitted['threshold']:.4f}: fit precision {on_fit['precision']:.3f} recall {on_fit['recall']:.3f}")
        print(f"    on the other half {figures}")
    Path(args.out).write_text(json.dumps(calibration, indent=1, ensure_ascii=False) + "\n")
    REPORT.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {args.out} and {REPORT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
