"""The `pictrace` command line: its parser, and every error turned into the exit code scripts rely on."""

from __future__ import annotations

import argparse
import logging
import sys

from pictrace import __version__
from pictrace.cli.common import (
    DEFAULT_API,
    DEFAULT_BUCKET,
    DEFAULT_S3_ENDPOINT,
    EXIT_NOTHING,
    EXIT_SERVICE,
    EXIT_USAGE,
    CliError,
    Target,
)
from pictrace.cli.compare import cmd_compare
from pictrace.cli.delete import cmd_delete
from pictrace.cli.details import cmd_details_backfill
from pictrace.cli.duplicates import cmd_duplicates
from pictrace.cli.ingest import cmd_ingest
from pictrace.cli.login import cmd_login
from pictrace.cli.render import Output
from pictrace.cli.search import cmd_search
from pictrace.cli.stats import cmd_stats
from pictrace.cli.vectors import cmd_vectors_backfill
from pictrace.errors import ConfigError, ModelMismatch, NotFound, PicTraceError, WeightsUnavailable

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    where = common.add_argument_group("where (defaults: the local stack of `make run`)")
    where.add_argument("--api", help=f"PicTrace API URL (env PICTRACE_API_URL, default {DEFAULT_API})")
    where.add_argument(
        "--s3-endpoint",
        help=f"S3 endpoint; 'aws' for AWS's own (env AWS_ENDPOINT_URL_S3, default {DEFAULT_S3_ENDPOINT})",
    )
    where.add_argument("--bucket", help=f"the stack's bucket (env PICTRACE_BUCKET, default {DEFAULT_BUCKET})")
    where.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the API (default 60)")
    common.add_argument("--json", action="store_true", help="print one JSON document instead of tables")
    common.add_argument("-q", "--quiet", action="store_true", help="no progress bars or notes on stderr")
    common.add_argument("-v", "--verbose", action="store_true", help="log what pictrace does (stderr)")

    parser = argparse.ArgumentParser(
        prog="pictrace",
        description="PicTrace from the terminal: index images, search, delete, look at the index.",
        epilog="exit codes: 0 done · 1 nothing found (no results, unknown id or key, images not indexed) · "
        "2 usage or configuration · 3 service error (API or S3 unreachable or failing, timeout)",
    )
    parser.add_argument("--version", action="version", version=f"pictrace {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "ingest",
        parents=[common],
        help="upload a folder's images, or index objects already in a bucket",
        description="PATH (a folder, searched recursively, or one image): upload its images under the images "
        "prefix and wait until the stack has indexed them. s3://BUCKET/PREFIX: run the ingest code here on objects "
        "already there (e.g. put before the stack existed). Both resume: what is indexed is skipped.",
    )
    p.add_argument("source", metavar="PATH|s3://BUCKET/PREFIX")
    p.add_argument("--key-prefix", help="upload under this prefix (default: the images prefix, e.g. images/)")
    p.add_argument("--workers", type=int, default=4, help="parallel uploads or downloads (default 4)")
    p.add_argument(
        "--wait", type=float, default=300, help="seconds to wait for the stack to index uploads (0: do not wait)"
    )
    p.add_argument("--force", action="store_true", help="backfill: sync every object, even those already indexed")
    p.add_argument("--retry-failed", action="store_true", help="backfill: try again objects that failed before")
    p.add_argument("--model-dir", help="backfill: the model artifact (default PICTRACE_MODEL_DIR or the repo's)")
    p.set_defaults(run=cmd_ingest)

    p = sub.add_parser(
        "search",
        parents=[common],
        help="the indexed images most similar to an image file, URL or id",
        description="Search through the HTTP API with an image file ('-' reads stdin), an http(s) URL (fetched by "
        "the service) or the id of an indexed image. Exits 1 when nothing is found.",
    )
    p.add_argument("query", metavar="IMAGE|URL|ID")
    p.add_argument("-k", "--top-k", type=int, help="results to show (API default 10, at most 100)")
    p.add_argument("--shortlist", type=int, help="candidates to rerank (API default 20)")
    p.set_defaults(run=cmd_search)

    p = sub.add_parser(
        "compare",
        parents=[common],
        help="why an image matches one indexed image: matched keypoints, transform, region (and a picture)",
        description="Compare a query (an image file, '-' for stdin, an http(s) URL or an id) with one indexed image "
        "(its id, or a key: images/… or a name under it) through POST /compare: verdict, scores, the ORB matches "
        "that agree on one affine transform and where the query sits in the indexed image. --out writes the picture "
        "(PNG, or JPEG for .jpg/.jpeg): both images side by side, matches drawn, the region outlined.",
    )
    p.add_argument("query", metavar="IMAGE|URL|ID")
    p.add_argument("image", metavar="ID|KEY")
    p.add_argument("--out", metavar="FILE", help="write the picture here (e.g. compare.png)")
    p.set_defaults(run=cmd_compare)

    p = sub.add_parser(
        "delete",
        parents=[common],
        help="delete an image by key (images/… or a name under it) or every copy of an id",
        description="Delete the object(s) from the bucket and drop them from the index now (the stack's own "
        "delete event then finds nothing left to do). Exits 1 when there is no such image.",
    )
    p.add_argument("what", metavar="KEY|ID")
    p.set_defaults(run=cmd_delete)

    p = sub.add_parser(
        "duplicates",
        parents=[common],
        help="the copy groups the stack found in the collection; mark a pair not a copy; check an older index",
        description="The groups of copies the stack's copy check found (GET /duplicates): each group's images oldest "
        "first, with the similarity of each link. --dismiss marks a pair not a copy (kept across reindexing); "
        "--rebuild queues every indexed image for its check (an index built before the check), which the stack runs "
        "in parallel. Exits 1 when there is no group.",
    )
    p.add_argument("--prefix", help="only images with a key under this prefix (a folder)")
    p.add_argument("--csv", action="store_true", help="one CSV row per link instead of tables")
    p.add_argument("--dismiss", nargs=2, metavar=("ID", "ID"), help="mark these two images not a copy")
    p.add_argument("--rebuild", action="store_true", help="queue every indexed image for its copy check")
    p.add_argument("--no-events", action="store_true", help="--rebuild: announce none of the copies it finds")
    p.add_argument(
        "--queue",
        help="--rebuild: the copies queue's URL (env PICTRACE_COPIES_QUEUE_URL; the stack's "
        "CopiesQueueUrl output; default for a local stack: its own)",
    )
    p.set_defaults(run=cmd_duplicates)

    p = sub.add_parser(
        "login",
        parents=[common],
        help="sign in to a deployed stack's user pool (ApiAuth=COGNITO)",
        description="Sign in with your user name and password (a first sign-in asks for a new password); the tokens "
        "are kept for this API in ~/.config/pictrace/tokens.json (readable by you only), refreshed as needed, and "
        "sent by every later command. The local stack (`make run`) asks for no sign-in.",
    )
    p.add_argument("--username", help="the user (email) to sign in as (default: asked)")
    p.add_argument(
        "--password-stdin", action="store_true", help="read the password (then a new one, if asked) from stdin"
    )
    p.add_argument("--logout", action="store_true", help="forget this API's tokens")
    p.add_argument(
        "--user-pool-client-id",
        help="the user pool app client to sign in with (env PICTRACE_USER_POOL_CLIENT_ID; default: the one the "
        "API's /auth/config names)",
    )
    p.add_argument("--region", help="that user pool's region (env AWS_REGION; with --user-pool-client-id)")
    p.set_defaults(run=cmd_login)

    p = sub.add_parser(
        "stats",
        parents=[common],
        help="indexed count, failures and the model weights in use",
        description="Counts from the bucket (objects, indexed images and keys, failures with their reasons, what "
        "is not indexed yet) and the weights the API runs with.",
    )
    p.set_defaults(run=cmd_stats)

    p = sub.add_parser(
        "vectors-backfill",
        parents=[common],
        help="mirror every indexed image into the S3 Vectors index (after switching to IndexBackend=s3vectors)",
        description="Put every indexed image's vector (from the segments and the entries changed since) into the "
        "stack's S3 Vectors index, and delete vectors of images no longer indexed. Safe to run again. The vector "
        "index: --vector-index (an index ARN, env PICTRACE_VECTOR_INDEX) or --vector-bucket (env "
        "PICTRACE_VECTOR_BUCKET) with the index name; the endpoint: AWS_ENDPOINT_URL_S3VECTORS.",
    )
    p.add_argument("--vector-bucket", help="the S3 Vectors bucket (env PICTRACE_VECTOR_BUCKET)")
    p.add_argument("--vector-index", help="the index name or ARN (env PICTRACE_VECTOR_INDEX, default images)")
    p.add_argument("--keep-stale", action="store_true", help="do not delete vectors of images no longer indexed")
    p.set_defaults(run=cmd_vectors_backfill)

    p = sub.add_parser(
        "details-backfill",
        parents=[common],
        help="queue every indexed image for its details (an index built before the details stage)",
        description="Send every indexed image's id to the stack's details queue: DetailsFunction makes the details "
        "the search of partial copies matches (docs/scoring.md, 4c), in parallel; images that have them already are "
        "left as they are. Safe to run again.",
    )
    p.add_argument(
        "--queue",
        help="the details queue's URL (env PICTRACE_DETAILS_QUEUE_URL; the stack's DetailsQueueUrl output; default "
        "for a local stack: its own)",
    )
    p.set_defaults(run=cmd_details_backfill)
    return parser


def main(argv: list[str] | None = None) -> int:
    """The `pictrace` command; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)  # exits 2 on usage errors, 0 for --help/--version
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("pictrace").setLevel(logging.INFO if args.verbose else logging.ERROR)
    out = Output(json=args.json, quiet=args.quiet)
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        target = Target.from_args(args)
        code: int = args.run(args, target, out)
        return code
    except CliError as exc:
        _error(str(exc))
        return exc.code
    except (ConfigError, ModelMismatch, WeightsUnavailable) as exc:
        _error(str(exc))
        return EXIT_USAGE
    except PicTraceError as exc:  # NotFound from the bucket, conflicts, upstream failures
        _error(f"{type(exc).__name__}: {exc}")
        return EXIT_NOTHING if isinstance(exc, NotFound) else EXIT_SERVICE
    except KeyboardInterrupt:
        _error("interrupted; run the same command again to resume")
        return 130
    except (BotoCoreError, ClientError) as exc:  # S3: a service error, said in one line
        return _s3_failure(exc)
    except OSError as exc:
        _error(str(exc))
        return EXIT_SERVICE
    except Exception as exc:  # a bug: the traceback goes to stderr, and the exit code stays one scripts expect
        logger.exception("unexpected failure")
        _error(f"{type(exc).__name__}: {exc}")
        return EXIT_SERVICE


def _s3_failure(exc: Exception) -> int:
    from botocore.exceptions import ClientError, NoCredentialsError

    if isinstance(exc, NoCredentialsError):
        _error("no AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY")
        return EXIT_USAGE
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        _error(f"S3 said {error.get('Code')}: {error.get('Message')} ({exc.operation_name})")
        return EXIT_SERVICE
    _error(f"S3: {exc}")
    return EXIT_SERVICE


def _error(message: str) -> None:
    sys.stderr.write(f"pictrace: error: {message}\n")
    sys.stderr.flush()
