"""A stand-in for the s3vectors client that enforces what moto's server does not: Amazon S3 Vectors' documented
limits (https://docs.aws.amazon.com/AmazonS3/latest/userguide/s3-vectors-limitations.html) and its request shapes.

Every call is first validated against botocore's service model (unknown or missing parameters raise
ParamValidationError, as the real client does) and serialised with botocore's own serialiser, so the request
size checked is the body the real client would send. Then, as the service does:
    request payload ≤ 20 MiB; PutVectors ≤ 500 vectors; DeleteVectors ≤ 500 keys; GetVectors ≤ 100 keys;
    ListVectors ≤ 1,000 per page; QueryVectors topK ≤ 10,000, answered in pages of `page` (nextToken);
    filterable metadata ≤ 2 KB and all metadata ≤ 40 KB per vector (counted as compact JSON: a stand-in, the
    service's own count is not documented); dimension as the index's; no NaN/infinity; no zero vector under cosine.
Refusals are ClientError ValidationException (HTTP 400), as the service answers. A filtered query in CLASSIC mode
filters *after* picking the `classic_window` nearest vectors (so it may return fewer than topK, as the service
warns); ENHANCED filters first. `refuse` makes chosen keys poison (refused with ValidationException on put).
"""

from __future__ import annotations

import json
import math
from typing import Any

import boto3
import numpy as np
from botocore.exceptions import ClientError
from botocore.serialize import create_serializer
from botocore.validate import ParamValidator

MAX_REQUEST_BYTES = 20 * 2**20
MAX_PUT = 500
MAX_DELETE = 500
MAX_GET = 100
MAX_LIST = 1000
MAX_TOP_K = 10_000
MAX_FILTERABLE = 2048
MAX_METADATA = 40 * 1024


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


class FakeS3Vectors:
    """The s3vectors operations PicTrace uses, in memory, refusing what the service refuses."""

    def __init__(self, page: int = 30, classic_window: int = 10) -> None:
        self._model = boto3.client("s3vectors", region_name="us-east-1").meta.service_model
        self._serializer = create_serializer(self._model.metadata["protocol"])
        self.page = page
        self.classic_window = classic_window
        self.buckets: set[str] = set()
        self.indexes: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, dict[str, Any], int]] = []  # operation, params, request body bytes
        self.refuse: set[str] = set()
        self._tokens: dict[str, list[dict[str, Any]]] = {}

    # --------------------------------------------------------------------- plumbing
    def _request(self, operation: str, params: dict[str, Any]) -> int:
        op = self._model.operation_model(operation)
        report = ParamValidator().validate(params, op.input_shape)
        if report.has_errors():
            from botocore.exceptions import ParamValidationError

            raise ParamValidationError(report=report.generate_report())
        body = self._serializer.serialize_to_request(params, op)["body"]
        size = len(body)
        self.calls.append((operation, params, size))
        if size > MAX_REQUEST_BYTES:
            raise self._error(operation, f"request payload is {size} bytes; the limit is 20 MiB", status=413)
        return size

    @staticmethod
    def _error(operation: str, message: str, status: int = 400, code: str = "ValidationException") -> ClientError:
        return ClientError(
            {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation
        )

    def _index(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        if "indexArn" in params:
            head, _, name = params["indexArn"].partition("/index/")
            where = (head.rpartition(":bucket/")[2], name)
        else:
            where = (params.get("vectorBucketName", ""), params.get("indexName", ""))
        if where not in self.indexes:
            raise self._error(operation, f"no index {where}", 404, "NotFoundException")
        return self.indexes[where]

    # --------------------------------------------------------------------- buckets and indexes
    def create_vector_bucket(self, **params: Any) -> dict[str, Any]:
        self._request("CreateVectorBucket", params)
        if params["vectorBucketName"] in self.buckets:
            raise self._error("CreateVectorBucket", "exists", 409, "ConflictException")
        self.buckets.add(params["vectorBucketName"])
        return {}

    def create_index(self, **params: Any) -> dict[str, Any]:
        self._request("CreateIndex", params)
        bucket = params.get("vectorBucketName") or params["vectorBucketArn"].rpartition(":bucket/")[2]
        if bucket not in self.buckets:
            raise self._error("CreateIndex", f"no vector bucket {bucket}", 404, "NotFoundException")
        self.indexes[(bucket, params["indexName"])] = {
            "dimension": params["dimension"],
            "metric": params["distanceMetric"],
            "non_filterable": set(params.get("metadataConfiguration", {}).get("nonFilterableMetadataKeys", [])),
            "mode": "CLASSIC",
            "vectors": {},
        }
        arn = f"arn:aws:s3vectors:us-east-1:123456789012:bucket/{bucket}/index/{params['indexName']}"
        return {"indexArn": arn}

    # --------------------------------------------------------------------- vectors
    def put_vectors(self, **params: Any) -> dict[str, Any]:
        self._request("PutVectors", params)
        index = self._index("PutVectors", params)
        vectors = params["vectors"]
        if len(vectors) > MAX_PUT:
            raise self._error("PutVectors", f"{len(vectors)} vectors; at most {MAX_PUT} per call")
        for v in vectors:
            data = v["data"]["float32"]
            if len(data) != index["dimension"]:
                raise self._error(
                    "PutVectors", f"{v['key']}: dimension {len(data)}, the index's is {index['dimension']}"
                )
            if not all(math.isfinite(x) for x in data):
                raise self._error("PutVectors", f"{v['key']}: NaN or infinite values")
            if index["metric"] == "cosine" and not any(data):
                raise self._error("PutVectors", f"{v['key']}: zero vectors are not allowed for cosine")
            meta = v.get("metadata", {})
            filterable = {k: x for k, x in meta.items() if k not in index["non_filterable"]}
            if _size(filterable) > MAX_FILTERABLE:
                raise self._error("PutVectors", f"{v['key']}: filterable metadata is {_size(filterable)} bytes (2 KB)")
            if _size(meta) > MAX_METADATA:
                raise self._error("PutVectors", f"{v['key']}: metadata is {_size(meta)} bytes (40 KB)")
            if v["key"] in self.refuse:
                raise self._error("PutVectors", f"{v['key']}: refused (poison)")
        for v in vectors:  # all or nothing, as one request
            index["vectors"][v["key"]] = {"data": list(v["data"]["float32"]), "metadata": v.get("metadata", {})}
        return {}

    def delete_vectors(self, **params: Any) -> dict[str, Any]:
        self._request("DeleteVectors", params)
        index = self._index("DeleteVectors", params)
        if len(params["keys"]) > MAX_DELETE:
            raise self._error("DeleteVectors", f"{len(params['keys'])} keys; at most {MAX_DELETE}")
        for key in params["keys"]:
            index["vectors"].pop(key, None)
        return {}

    def get_vectors(self, **params: Any) -> dict[str, Any]:
        self._request("GetVectors", params)
        index = self._index("GetVectors", params)
        if len(params["keys"]) > MAX_GET:
            raise self._error("GetVectors", f"{len(params['keys'])} keys; at most {MAX_GET}")
        found = [(k, index["vectors"][k]) for k in params["keys"] if k in index["vectors"]]
        return {"vectors": [{"key": k, "metadata": v["metadata"]} for k, v in found]}

    def list_vectors(self, **params: Any) -> dict[str, Any]:
        self._request("ListVectors", params)
        index = self._index("ListVectors", params)
        keys = sorted(index["vectors"])
        start = int(params.get("nextToken", "0"))
        page = keys[start : start + min(params.get("maxResults", 500), MAX_LIST)]
        out: dict[str, Any] = {"vectors": [{"key": k} for k in page]}
        if start + len(page) < len(keys):
            out["nextToken"] = str(start + len(page))
        return out

    def query_vectors(self, **params: Any) -> dict[str, Any]:
        self._request("QueryVectors", params)
        index = self._index("QueryVectors", params)
        top_k = params["topK"]
        if top_k > MAX_TOP_K:
            raise self._error("QueryVectors", f"topK {top_k}; at most {MAX_TOP_K}")
        token = params.get("nextToken")
        if token is None:
            ranked = self._rank(index, params)
            token = f"q{len(self._tokens)}"
            self._tokens[token] = ranked
        ranked = self._tokens[token]
        page, rest = ranked[: self.page], ranked[self.page :]
        out: dict[str, Any] = {"vectors": page, "distanceMetric": index["metric"]}
        if rest:
            following = f"q{len(self._tokens)}"
            self._tokens[following] = rest
            out["nextToken"] = following
        return out

    def _rank(self, index: dict[str, Any], params: dict[str, Any]) -> list[dict[str, Any]]:
        q = np.asarray(params["queryVector"]["float32"], np.float32)
        folder = params.get("filter", {}).get("folders", {}).get("$eq")
        mode = params.get("queryMode", index["mode"])

        def matches(meta: dict[str, Any]) -> bool:
            return folder is None or folder in meta.get("folders", [])

        scored = []
        for key, v in index["vectors"].items():
            d = np.asarray(v["data"], np.float32)
            cosine = float(q @ d / (np.linalg.norm(q) * np.linalg.norm(d)))
            scored.append((1.0 - cosine, key, v["metadata"]))
        scored.sort()
        if mode == "ENHANCED" or folder is None:  # filter, then search
            chosen = [s for s in scored if matches(s[2])][: params["topK"]]
        else:  # search a window, then filter: fewer than topK when the folder is rare
            chosen = [s for s in scored[: max(self.classic_window, 1)] if matches(s[2])][: params["topK"]]
        return [
            {"key": k, "distance": d, **({"metadata": m} if params.get("returnMetadata") else {})} for d, k, m in chosen
        ]
