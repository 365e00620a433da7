"""Query requests in, store queries out, and store rows back to proto.

Validation lives here: every refused request raises
:class:`~services.kernel.errors.InvalidArgument` naming the field. Time
ranges are resolved to whole minutes (the finest rollup): the start is
rounded down and the end up, an unset end meaning now.

A caller authenticated by an API key of a project sees only that project:
its queries are restricted to it, and naming another project is
:class:`~services.kernel.errors.PermissionDenied`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from typing import Any

from llmgw.common.v1 import common_pb2
from llmgw.usage.v1 import usage_pb2 as pb
from services.kernel.errors import FieldViolation, InvalidArgument, PermissionDenied
from services.kernel.identity import Principal
from services.usage.facts import Granularity
from services.usage.store import TAG, AuditQuery, Totals, UsageQuery, UsageRow

DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 10_000
DEFAULT_AUDIT_PAGE_SIZE = 100
MAX_AUDIT_PAGE_SIZE = 1000
DEFAULT_TOP_LIMIT = 10
MAX_TOP_LIMIT = 1000
MAX_BUCKETS = 50_000

DIMENSION_COLUMNS: Mapping[int, str] = {
    pb.USAGE_DIMENSION_API_KEY: "api_key_id",
    pb.USAGE_DIMENSION_PROJECT: "project_id",
    pb.USAGE_DIMENSION_TAG: TAG,
    pb.USAGE_DIMENSION_MODEL: "model",
    pb.USAGE_DIMENSION_PROVIDER: "provider",
}
_GROUP_FIELDS: Mapping[str, str] = {
    "api_key_id": "api_key_id",
    "project_id": "project_id",
    TAG: "tag_value",
    "model": "model",
    "provider": "provider",
}
_BUCKETS: Mapping[int, Granularity | None] = {
    pb.TIME_BUCKET_UNSPECIFIED: None,
    pb.TIME_BUCKET_MINUTE: Granularity.MINUTE,
    pb.TIME_BUCKET_HOUR: Granularity.HOUR,
    pb.TIME_BUCKET_DAY: Granularity.DAY,
}
_METRICS: Mapping[int, str] = {
    pb.USAGE_METRIC_UNSPECIFIED: "total_nanos",
    pb.USAGE_METRIC_COST: "total_nanos",
    pb.USAGE_METRIC_TOTAL_TOKENS: "total_tokens",
    pb.USAGE_METRIC_REQUESTS: "request_count",
}


def usage_query(
    request: pb.QueryUsageRequest, principal: Principal, now: float
) -> tuple[UsageQuery, int, int]:
    """The store query of ``request``, its page size and the offset its token names."""
    violations: list[FieldViolation] = []
    start, end = _minute_range(request.time_range, now, violations)
    group_by: list[str] = []
    for index, dimension in enumerate(request.group_by):
        column = DIMENSION_COLUMNS.get(dimension)
        if column is None:
            violations.append(
                FieldViolation(f"group_by[{index}]", "must be a known dimension", "UNKNOWN")
            )
        elif column not in group_by:
            group_by.append(column)
    if TAG in group_by and not request.group_by_tag_key:
        violations.append(
            FieldViolation("group_by_tag_key", "is required when grouping by TAG", "REQUIRED")
        )
    bucket = _BUCKETS.get(request.bucket, None)
    if request.bucket not in _BUCKETS:
        violations.append(FieldViolation("bucket", "must be a known bucket width", "UNKNOWN"))
    elif bucket is not None and (end - start) // bucket > MAX_BUCKETS:
        violations.append(
            FieldViolation(
                "time_range", f"holds more than {MAX_BUCKETS} buckets; use wider ones", "TOO_LONG"
            )
        )
    page_size = _page_size(request.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, violations)
    offset = _offset_of(request.page_token, violations)
    _raise_if(violations)
    return (
        UsageQuery(
            start=start,
            end=end,
            bucket=bucket,
            group_by=tuple(group_by),
            tag_key=request.group_by_tag_key,
            **_filter(request.filter, principal, "filter"),
        ),
        page_size,
        offset,
    )


def top_query(
    request: pb.QueryTopUsageRequest, principal: Principal, now: float
) -> tuple[UsageQuery, str, int]:
    """The store query of ``request`` (grouped by the ranked dimension), the metric, the limit."""
    violations: list[FieldViolation] = []
    start, end = _minute_range(request.time_range, now, violations)
    column = DIMENSION_COLUMNS.get(request.dimension)
    if column is None:
        violations.append(FieldViolation("dimension", "must be a known dimension", "REQUIRED"))
    elif column == TAG and not request.tag_key:
        violations.append(FieldViolation("tag_key", "is required when ranking by TAG", "REQUIRED"))
    metric = _METRICS.get(request.order_by)
    if metric is None:
        violations.append(FieldViolation("order_by", "must be a known metric", "UNKNOWN"))
    limit = request.limit or DEFAULT_TOP_LIMIT
    if not 0 < limit <= MAX_TOP_LIMIT:
        violations.append(
            FieldViolation("limit", f"must be between 0 and {MAX_TOP_LIMIT}", "OUT_OF_RANGE")
        )
    _raise_if(violations)
    assert column is not None and metric is not None
    query = UsageQuery(
        start=start,
        end=end,
        group_by=(column,),
        tag_key=request.tag_key,
        **_filter(request.filter, principal, "filter"),
    )
    return query, metric, limit


def audit_query(request: pb.QueryAuditLogRequest, principal: Principal, now: float) -> AuditQuery:
    """The store query of ``request``; it fetches one entry more than the page to find the end."""
    violations: list[FieldViolation] = []
    start, end = _micros_range(request.time_range, now, violations)
    page_size = _page_size(
        request.page_size, DEFAULT_AUDIT_PAGE_SIZE, MAX_AUDIT_PAGE_SIZE, violations
    )
    after: tuple[int, str] | None = None
    if request.page_token:
        decoded = _decode_token(request.page_token)
        if (
            not isinstance(decoded, list)
            or len(decoded) != 2
            or not isinstance(decoded[0], int)
            or not isinstance(decoded[1], str)
        ):
            violations.append(_bad_token())
        else:
            after = (decoded[0], decoded[1])
    _raise_if(violations)
    project = _scoped_projects(
        (request.project_id,) if request.project_id else (), principal, "project_id"
    )
    return AuditQuery(
        start_micros=start,
        end_micros=end,
        actor_id=request.actor_id,
        action=request.action,
        resource=request.resource,
        project_id=project[0] if project else "",
        limit=page_size + 1,
        after=after,
    )


def audit_token(time_micros: int, entry_id: str) -> str:
    """The page token that continues after the entry (``time_micros``, ``entry_id``)."""
    return _encode_token([time_micros, entry_id])


def offset_token(offset: int) -> str:
    """The page token of a usage query that continues at row ``offset``."""
    return _encode_token({"offset": offset})


def usage_row(row: UsageRow, group_by: Sequence[str]) -> pb.UsageRow:
    """``row`` as proto."""
    message = pb.UsageRow(
        group=pb.UsageGroup(
            **{_GROUP_FIELDS[name]: value for name, value in zip(group_by, row.group, strict=True)}
        ),
        totals=usage_totals(row.totals),
    )
    if row.bucket_start is not None:
        message.bucket_start_time.FromSeconds(row.bucket_start)
    return message


def usage_totals(totals: Totals) -> pb.UsageTotals:
    """``totals`` as proto."""
    value = totals.value
    return pb.UsageTotals(
        request_count=value("request_count"),
        error_count=value("error_count"),
        cached_count=value("cached_count"),
        usage=common_pb2.Usage(
            input_tokens=value("input_tokens"),
            output_tokens=value("output_tokens"),
            cached_input_tokens=value("cached_input_tokens"),
            cache_creation_input_tokens=value("cache_creation_input_tokens"),
            reasoning_tokens=value("reasoning_tokens"),
            total_tokens=value("total_tokens"),
        ),
        cost=common_pb2.Cost(
            currency_code=totals.currency_code,
            input_nanos=value("input_nanos"),
            output_nanos=value("output_nanos"),
            cached_input_nanos=value("cached_input_nanos"),
            cache_creation_input_nanos=value("cache_creation_input_nanos"),
            total_nanos=value("total_nanos"),
        ),
    )


def ranked(rows: Sequence[UsageRow], metric: str, limit: int) -> list[pb.TopUsageEntry]:
    """The ``limit`` rows with the highest ``metric`` (ties by value), as ranking entries."""
    ordered = sorted(rows, key=lambda row: (-row.totals.value(metric), row.group))
    return [
        pb.TopUsageEntry(rank=rank, value=row.group[0], totals=usage_totals(row.totals))
        for rank, row in enumerate(ordered[:limit], start=1)
    ]


def _filter(message: pb.UsageFilter, principal: Principal, path: str) -> dict[str, Any]:
    return {
        "api_key_ids": tuple(message.api_key_ids),
        "project_ids": _scoped_projects(
            tuple(message.project_ids), principal, f"{path}.project_ids"
        ),
        "models": tuple(message.models),
        "providers": tuple(message.providers),
        "tags": tuple(sorted(message.tags.items())),
    }


def _scoped_projects(
    projects: tuple[str, ...], principal: Principal, field: str
) -> tuple[str, ...]:
    """``projects`` as the caller may see them (see the module docstring)."""
    own = principal.project_id if principal.api_key_id else ""
    if not own:
        return projects
    if any(project != own for project in projects):
        raise PermissionDenied(
            f"an API key of project {own!r} may only query that project",
            reason="PROJECT_NOT_VISIBLE",
            metadata={"field": field},
        )
    return (own,)


def _minute_range(
    time_range: common_pb2.TimeRange, now: float, violations: list[FieldViolation]
) -> tuple[int, int]:
    start, end = _micros_range(time_range, now, violations)
    minute = Granularity.MINUTE * 1_000_000
    start_minute = start // minute * 60
    end_minute = -(-end // minute) * 60
    return start_minute, end_minute


def _micros_range(
    time_range: common_pb2.TimeRange, now: float, violations: list[FieldViolation]
) -> tuple[int, int]:
    if not time_range.HasField("start_time"):
        violations.append(FieldViolation("time_range.start_time", "is required", "REQUIRED"))
        return 0, 0
    start = time_range.start_time.ToMicroseconds()
    end = (
        time_range.end_time.ToMicroseconds()
        if time_range.HasField("end_time")
        else int(now * 1_000_000)
    )
    if end <= start:
        violations.append(
            FieldViolation("time_range.end_time", "must be after the start time", "OUT_OF_RANGE")
        )
    return start, end


def _page_size(requested: int, default: int, maximum: int, violations: list[FieldViolation]) -> int:
    if requested < 0:
        violations.append(FieldViolation("page_size", "must not be negative", "OUT_OF_RANGE"))
        return default
    return min(requested or default, maximum)


def _offset_of(token: str, violations: list[FieldViolation]) -> int:
    if not token:
        return 0
    decoded = _decode_token(token)
    offset = decoded.get("offset") if isinstance(decoded, dict) else None
    if not isinstance(offset, int) or offset < 0:
        violations.append(_bad_token())
        return 0
    return offset


def _encode_token(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


def _decode_token(token: str) -> object:
    try:
        return json.loads(base64.urlsafe_b64decode(token.encode()))
    except (binascii.Error, ValueError):
        return None


def _bad_token() -> FieldViolation:
    return FieldViolation("page_token", "is not a token of this query", "INVALID_PAGE_TOKEN")


def _raise_if(violations: list[FieldViolation]) -> None:
    if violations:
        raise InvalidArgument("the request is invalid", violations)
