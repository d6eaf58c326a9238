"""`pictrace search`: a query through the HTTP API, like any client."""

from __future__ import annotations

import argparse
import logging

from pictrace.cli.common import (
    EXIT_OK,
    NothingFound,
    Target,
    api_call,
    query_request,
)
from pictrace.cli.render import Output, print_results

logger = logging.getLogger(__name__)


def cmd_search(args: argparse.Namespace, target: Target, out: Output) -> int:
    query: str = args.query
    params = {k: v for k, v in (("top_k", args.top_k), ("shortlist", args.shortlist)) if v is not None}
    request = query_request(query)
    if "files" in request:
        body = api_call(target, "POST", "/search", params=params, **request)
    else:
        body = api_call(target, "POST", "/search", json={**request["json"], **params})
    results = body.get("results", [])
    if out.json:
        out.document(body)
    else:
        print_results(out, body)
    if not results:
        raise NothingFound(f"no results: the index holds {body.get('indexed', 0)} images")
    return EXIT_OK


#: how the search table says whether a result is a copy of the query (None: the model has no calibration)
_MATCH: dict[bool | None, str] = {True: "[bold green]copy[/]", False: "[dim]not a copy[/]", None: "[dim]–[/]"}
