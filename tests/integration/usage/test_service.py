"""UsageService over gRPC: grouped and paged answers, rankings, scoping and every refusal."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from datetime import UTC, datetime

import grpc
import pytest

from llmgw.usage.v1 import usage_pb2 as pb
from services.kernel.identity import Principal
from services.kernel.migrations import migrate
from services.kernel.sql import Database, DatabaseConfig
from services.usage.facts import audit_fact, usage_fact
from services.usage.schema import COMPONENT, MIGRATIONS
from services.usage.store import UsageStore
from tests.integration.models.rpc_errors import failure, reason, violations
from tests.integration.usage.support import (
    BASE_TIME,
    RunningUsage,
    audit_event,
    running_usage,
    settings_for,
    time_range,
    usage_event,
)

pytestmark = pytest.mark.integration

EVENT_TIME = datetime.fromtimestamp(BASE_TIME, UTC)
RANGE = time_range(BASE_TIME, BASE_TIME + 86400)
KEY_OF_PROJ_1 = Principal(actor_type="api_key", actor_id="key-a", project_id="proj-1")


@pytest.fixture
async def usage(database_url: str) -> AsyncIterator[RunningUsage]:
    database = await Database.connect(DatabaseConfig(database_url))
    try:
        await migrate(database, COMPONENT, MIGRATIONS)
        events = [
            usage_event("r1", api_key_id="key-a", project_id="proj-1", model="m1", cost_nanos=10),
            usage_event("r2", api_key_id="key-a", project_id="proj-1", model="m2", cost_nanos=30),
            usage_event("r3", api_key_id="key-b", project_id="proj-2", model="m2", cost_nanos=5,
                        input_tokens=100, tags={"team": "x"}),
            usage_event("r4", api_key_id="key-c", project_id="proj-2", model="m3", cost_nanos=20,
                        at=BASE_TIME + 7200),
        ]  # fmt: skip
        audits = [
            audit_event("a1", project_id="proj-1"),
            audit_event("a2", project_id="proj-2", at_micros=(BASE_TIME + 1) * 1_000_000),
            audit_event("a3", project_id="proj-1", at_micros=(BASE_TIME + 2) * 1_000_000),
        ]
        await UsageStore(database).apply(
            [usage_fact(e.metadata.id, EVENT_TIME, e) for e in events],
            [audit_fact(e.metadata.id, EVENT_TIME, e) for e in audits],
            now=1,
        )
    finally:
        await database.close()
    async with running_usage(settings_for(database_url)) as running:
        yield running


async def test_usage_is_grouped_bucketed_and_paged(usage: RunningUsage) -> None:
    request = pb.QueryUsageRequest(
        time_range=RANGE,
        group_by=[pb.USAGE_DIMENSION_MODEL, pb.USAGE_DIMENSION_PROJECT],
        bucket=pb.TIME_BUCKET_HOUR,
        page_size=2,
    )
    first = await usage.stub.QueryUsage(request)
    request.page_token = first.next_page_token
    second = await usage.stub.QueryUsage(request)
    assert second.next_page_token == ""
    rows = [*first.rows, *second.rows]
    assert [
        (r.bucket_start_time.seconds - BASE_TIME, r.group.model, r.group.project_id,
         r.totals.cost.total_nanos)
        for r in rows
    ] == [(0, "m1", "proj-1", 10), (0, "m2", "proj-1", 30), (0, "m2", "proj-2", 5),
          (7200, "m3", "proj-2", 20)]  # fmt: skip
    assert first.totals.cost.total_nanos == second.totals.cost.total_nanos == 65
    assert first.totals.request_count == 4


async def test_top_usage_ranks_by_the_metric(usage: RunningUsage) -> None:
    by_cost = await usage.stub.QueryTopUsage(
        pb.QueryTopUsageRequest(time_range=RANGE, dimension=pb.USAGE_DIMENSION_API_KEY, limit=2)
    )
    assert [(e.rank, e.value, e.totals.cost.total_nanos) for e in by_cost.entries] == [
        (1, "key-a", 40),
        (2, "key-c", 20),
    ]
    by_tokens = await usage.stub.QueryTopUsage(
        pb.QueryTopUsageRequest(
            time_range=RANGE,
            dimension=pb.USAGE_DIMENSION_MODEL,
            order_by=pb.USAGE_METRIC_TOTAL_TOKENS,
        )
    )
    assert [e.value for e in by_tokens.entries] == ["m2", "m1", "m3"]
    by_tag = await usage.stub.QueryTopUsage(
        pb.QueryTopUsageRequest(
            time_range=RANGE,
            dimension=pb.USAGE_DIMENSION_TAG,
            tag_key="team",
            order_by=pb.USAGE_METRIC_REQUESTS,
        )
    )
    assert [(e.value, e.totals.request_count) for e in by_tag.entries] == [("", 3), ("x", 1)]


async def test_an_api_key_sees_only_its_project(usage: RunningUsage) -> None:
    metadata = KEY_OF_PROJ_1.to_metadata()
    mine = await usage.stub.QueryUsage(pb.QueryUsageRequest(time_range=RANGE), metadata=metadata)
    assert mine.totals.cost.total_nanos == 40
    log = await usage.stub.QueryAuditLog(
        pb.QueryAuditLogRequest(time_range=RANGE), metadata=metadata
    )
    assert [e.id for e in log.entries] == ["a3", "a1"]

    other_usage = await failure(
        usage.stub.QueryUsage(
            pb.QueryUsageRequest(time_range=RANGE, filter=pb.UsageFilter(project_ids=["proj-2"])),
            metadata=metadata,
        )
    )
    assert other_usage.code() == grpc.StatusCode.PERMISSION_DENIED
    assert reason(other_usage) == "PROJECT_NOT_VISIBLE"
    other_audit = await failure(
        usage.stub.QueryAuditLog(
            pb.QueryAuditLogRequest(time_range=RANGE, project_id="proj-2"), metadata=metadata
        )
    )
    assert other_audit.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_the_audit_log_pages_newest_first(usage: RunningUsage) -> None:
    request = pb.QueryAuditLogRequest(time_range=RANGE, page_size=2)
    first = await usage.stub.QueryAuditLog(request)
    request.page_token = first.next_page_token
    second = await usage.stub.QueryAuditLog(request)
    assert [e.id for e in [*first.entries, *second.entries]] == ["a3", "a2", "a1"]
    assert second.next_page_token == ""
    assert first.entries[0].actor.id == "alice"


@pytest.mark.parametrize(
    ("request_message", "field"),
    [
        (pb.QueryUsageRequest(), "time_range.start_time"),
        (pb.QueryUsageRequest(time_range=time_range(BASE_TIME, BASE_TIME)), "time_range.end_time"),
        (
            pb.QueryUsageRequest(time_range=RANGE, group_by=[pb.USAGE_DIMENSION_TAG]),
            "group_by_tag_key",
        ),
        (pb.QueryUsageRequest(time_range=RANGE, group_by=[99]), "group_by[0]"),  # type: ignore[list-item]
        (pb.QueryUsageRequest(time_range=RANGE, bucket=99), "bucket"),  # type: ignore[arg-type]
        (pb.QueryUsageRequest(time_range=RANGE, page_size=-1), "page_size"),
        (
            pb.QueryUsageRequest(
                time_range=time_range(BASE_TIME, BASE_TIME + 60 * 86400),
                bucket=pb.TIME_BUCKET_MINUTE,
            ),
            "time_range",
        ),
        (pb.QueryUsageRequest(time_range=RANGE, page_token="nonsense!"), "page_token"),
        (pb.QueryTopUsageRequest(time_range=RANGE), "dimension"),
        (
            pb.QueryTopUsageRequest(time_range=RANGE, dimension=pb.USAGE_DIMENSION_TAG),
            "tag_key",
        ),
        (
            pb.QueryTopUsageRequest(time_range=RANGE, dimension=pb.USAGE_DIMENSION_MODEL, limit=-3),
            "limit",
        ),
        (
            pb.QueryTopUsageRequest(
                time_range=RANGE,
                dimension=pb.USAGE_DIMENSION_MODEL,
                order_by=99,  # type: ignore[arg-type]
            ),
            "order_by",
        ),
        (pb.QueryAuditLogRequest(), "time_range.start_time"),
        (pb.QueryAuditLogRequest(time_range=RANGE, page_token="e30="), "page_token"),
        (pb.QueryAuditLogRequest(time_range=RANGE, page_size=-5), "page_size"),
    ],
)
async def test_invalid_requests_are_refused_naming_the_field(
    usage: RunningUsage, request_message: object, field: str
) -> None:
    call: Awaitable[object]
    if isinstance(request_message, pb.QueryUsageRequest):
        call = usage.stub.QueryUsage(request_message)
    elif isinstance(request_message, pb.QueryTopUsageRequest):
        call = usage.stub.QueryTopUsage(request_message)
    else:
        assert isinstance(request_message, pb.QueryAuditLogRequest)
        call = usage.stub.QueryAuditLog(request_message)
    error = await failure(call)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in violations(error)


async def test_summing_two_currencies_is_a_failed_precondition(sqlite_url: str) -> None:
    database = await Database.connect(DatabaseConfig(sqlite_url))
    try:
        await migrate(database, COMPONENT, MIGRATIONS)
        events = [usage_event("usd"), usage_event("eur", currency="EUR")]
        await UsageStore(database).apply(
            [usage_fact(e.metadata.id, EVENT_TIME, e) for e in events], [], now=1
        )
    finally:
        await database.close()
    async with running_usage(settings_for(sqlite_url)) as usage:
        error = await failure(usage.stub.QueryUsage(pb.QueryUsageRequest(time_range=RANGE)))
        assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert reason(error) == "MIXED_CURRENCIES"
