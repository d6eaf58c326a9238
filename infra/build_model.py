"""Build the model artifact: Keras ResNet50 with the named weights, exported to TFLite (model.tflite + model.json).

Usage: python infra/build_model.py --weights random:0 --out layers/model/model [--float32]
Rebuilds only when the artifact in --out holds other weights or precision (or --force).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from pictrace.embedding import INFO_FILE, MODEL_FILE, export_tflite, parse_weights
from pictrace.errors import PicTraceError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="random:0", help="imagenet | random:<seed> | path/to/weights.h5")
    parser.add_argument("--out", default="layers/model/model", help="artifact directory")
    parser.add_argument("--float32", action="store_true", help="keep float32 weights (default: float16 weights)")
    parser.add_argument("--force", action="store_true", help="rebuild even if the artifact matches")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(args.out)
    try:
        wanted = parse_weights(args.weights).name
        precision = "float32" if args.float32 else "float16 weights, float32 compute"
        info_path = out / INFO_FILE
        if not args.force and info_path.is_file() and (out / MODEL_FILE).is_file():
            info = json.loads(info_path.read_text())
            if info.get("weights") == wanted and info.get("precision") == precision:
                print(f"model up to date: {out / MODEL_FILE} holds {wanted} ({precision})")
                return 0
        info = export_tflite(args.weights, out, float16=not args.float32)
    except PicTraceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = (out / MODEL_FILE).stat().st_size
    print(f"built {out / MODEL_FILE}: {size / 1e6:.1f} MB, weights {info['weights']}, {info['precision']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
