"""Settings: one frozen dataclass, read from the environment once; explicit arguments override it."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pictrace.errors import ConfigError
from pictrace.limits import DECODER_MAX_PIXELS
from pictrace.verdict import SIGNALS, Scoring, scoring_for

ENV_PREFIX = "PICTRACE_"
AUTH_MODES = ("none", "cognito", "jwt", "iam")


@dataclass(frozen=True)
class Settings:
    """Everything PicTrace can be configured with. Environment names are PICTRACE_<FIELD upper-cased>."""

    bucket: str
    images_prefix: str = "images/"
    index_prefix: str = "index/"
    queries_prefix: str = "queries/"
    model_dir: str = "/opt/model"
    model_layer: str = ""  # ARN of a layer version whose archive holds model/: fetched into model_dir if absent
    weights: str = ""  # the weights the model artifact must hold; empty = accept what it holds
    max_bytes: int = 20_000_000
    max_pixels: int = DECODER_MAX_PIXELS  # at most that: the decoder's own ceiling
    # candidates fetched and reranked (at least top_k): SSCD keeps every original within a shortlist of 5
    # (docs/benchmarks.md), and each one costs a GET and a rerank
    shortlist: int = 10
    top_k: int = 10
    presign_seconds: int = 900
    url_timeout: float = 10.0
    url_allow_private: bool = False  # only for local stacks and tests: lets query URLs reach 127.0.0.1 etc.
    refresh_seconds: float = 2.0
    fetch_concurrency: int = 16
    feature_cache: int = 2048
    # final-score weights (pictrace.rerank); None: the model's own, fitted by `make fit-fusion` (pictrace.verdict)
    weight_cosine: float | None = None
    weight_gist: float | None = None
    weight_ssim: float | None = None
    weight_geometry: float | None = None
    verify: int = 16  # shortlisted candidates that get the geometric check (ORB + RANSAC), best by the other signals
    regions: bool = True  # an image query whose best result is not a copy has its regions searched too (issue 27)
    # the most images whose details (12.5 KiB each) the search holds in memory for its details shortlist, which a
    # region search adds the images whose details match the query best from (issue 27); 0: none held, no such list
    details_held: int = 40_000
    segment_dtype: str = "float32"  # how segments store the per-image matrices: float32 or float16
    max_segments: int = 8  # compaction merges the newest segments short of segment_rows beyond this many
    segment_rows: int = 20_000  # rows per segment (full segments are never rewritten)
    index_backend: str = "segments"  # segments (in memory, from S3) or s3vectors (Amazon S3 Vectors)
    vector_bucket: str = ""  # the S3 Vectors bucket (index_backend s3vectors)
    vector_index: str = "images"  # the index in it, or the index ARN (then vector_bucket is not needed)
    # who may call the API, as the page and `pictrace login` learn it from GET /auth/config (the stack sets these;
    # the API Gateway authorizer is what enforces it): none (a local stack, or ApiAuth=NONE), cognito, jwt or iam
    auth_mode: str = "none"
    auth_domain: str = ""  # cognito: the hosted UI's base URL
    auth_client_id: str = ""  # cognito: the app client the page and the CLI sign in with
    auth_region: str = ""  # cognito: the user pool's region (the CLI's InitiateAuth)
    # copies within the collection (pictrace.copies): the SQS queue ingest sends each new image's id to for its copy
    # check (empty: no check), the EventBridge bus each copy found is announced on (empty: no events), and the
    # candidates a check reranks
    copies_queue_url: str = ""
    event_bus: str = ""
    copies_shortlist: int = 20
    # the SQS queue ingest sends each new image's id to for its details (pictrace.detailstage; empty: none made)
    details_queue_url: str = ""

    def __post_init__(self) -> None:
        if not self.bucket:
            raise ConfigError("PICTRACE_BUCKET is not set: set it to the name of the S3 bucket that holds the images")
        for name in ("images_prefix", "index_prefix", "queries_prefix"):
            value = getattr(self, name)
            if not value.endswith("/"):
                raise ConfigError(f"PICTRACE_{name.upper()} must end with '/', got {value!r}")
        prefixes = [self.images_prefix, self.index_prefix, self.queries_prefix]
        for a in prefixes:
            for b in prefixes:
                if a is not b and a != b and (a.startswith(b) or b.startswith(a)):
                    raise ConfigError(f"prefixes must not nest: {a!r} and {b!r}")
        if len(set(prefixes)) != 3:
            raise ConfigError("images, index and queries prefixes must differ")
        if self.index_backend not in ("segments", "s3vectors"):
            raise ConfigError(f"PICTRACE_INDEX_BACKEND must be segments or s3vectors, got {self.index_backend!r}")
        if self.index_backend == "s3vectors" and not (self.vector_bucket or self.vector_index.startswith("arn:")):
            raise ConfigError(
                "the s3vectors backend needs PICTRACE_VECTOR_INDEX (an index ARN) or PICTRACE_VECTOR_BUCKET"
            )
        if self.max_pixels > DECODER_MAX_PIXELS:
            raise ConfigError(f"PICTRACE_MAX_PIXELS must be at most {DECODER_MAX_PIXELS} (the decoder's own ceiling)")
        self._check_auth()
        if self.segment_dtype not in ("float32", "float16"):
            raise ConfigError(f"PICTRACE_SEGMENT_DTYPE must be float32 or float16, got {self.segment_dtype!r}")
        if self.details_held < 0:
            raise ConfigError("PICTRACE_DETAILS_HELD must be 0 or more")
        for name in (
            "max_bytes",
            "max_pixels",
            "shortlist",
            "top_k",
            "presign_seconds",
            "fetch_concurrency",
            "max_segments",
            "segment_rows",
            "copies_shortlist",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"PICTRACE_{name.upper()} must be positive")

    def _check_auth(self) -> None:
        if self.auth_mode not in AUTH_MODES:
            raise ConfigError(f"PICTRACE_AUTH_MODE must be one of {', '.join(AUTH_MODES)}, got {self.auth_mode!r}")
        if self.auth_mode == "cognito" and not (self.auth_domain and self.auth_client_id):
            raise ConfigError("PICTRACE_AUTH_MODE=cognito needs PICTRACE_AUTH_DOMAIN and PICTRACE_AUTH_CLIENT_ID")

    def scoring(self, weights: str, preprocess: str) -> Scoring:
        """How a model's results are scored and judged here: its fitted fusion weights with those set here, its
        centre, and its calibration unless a weight set here departs from it (pictrace.verdict)."""
        overrides = {name: getattr(self, f"weight_{name}") for name in SIGNALS}
        return scoring_for(weights, preprocess, {k: v for k, v in overrides.items() if v is not None})

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read settings from the environment (PICTRACE_*); keyword arguments override it."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            raw = env.get(ENV_PREFIX + field.name.upper())
            if raw is None or raw == "":
                continue
            values[field.name] = _convert(field.name, field.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        if "bucket" not in values:
            raise ConfigError("PICTRACE_BUCKET is not set: set it to the name of the S3 bucket that holds the images")
        return cls(**values)


def _convert(name: str, type_name: Any, raw: str) -> Any:
    kind = type_name if isinstance(type_name, str) else getattr(type_name, "__name__", str(type_name))
    kind = kind.removesuffix(" | None")
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            if raw.lower() not in ("1", "true", "yes", "0", "false", "no"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes")
    except ValueError:
        raise ConfigError(f"PICTRACE_{name.upper()} must be a {kind}, got {raw!r}") from None
    return raw


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings.from_env()
