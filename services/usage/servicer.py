"""The UsageService servicer: proto requests in, store queries, proto responses out.

Thin on purpose: validation and conversions are in :mod:`services.usage.queries`,
SQL in :mod:`services.usage.store`; errors are mapped to status codes by the
kernel interceptor.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from google.protobuf import json_format
from grpc import aio

from llmgw.common.v1 import common_pb2
from llmgw.usage.v1 import usage_pb2 as pb
from llmgw.usage.v1 import usage_pb2_grpc
from services.kernel.errors import FailedPrecondition
from services.kernel.identity import principal_of
from services.usage import queries
from services.usage.store import MixedCurrencies, Totals, UsageQuery, UsageRow, UsageStore

Context = aio.ServicerContext[object, object]


class UsageServicer(usage_pb2_grpc.UsageServiceServicer):
    """Answers usage, ranking and audit queries from one :class:`UsageStore`."""

    def __init__(self, store: UsageStore, clock: Callable[[], float] = time.time) -> None:
        """Serve ``store``; ``clock`` gives "now" for ranges without an end."""
        self._store = store
        self._clock = clock

    async def QueryUsage(  # noqa: N802 - the generated method name
        self, request: pb.QueryUsageRequest, context: Context
    ) -> pb.QueryUsageResponse:
        """Rows of the requested page and the totals of all rows."""
        principal = principal_of(context.invocation_metadata())
        query, page_size, offset = queries.usage_query(request, principal, self._clock())
        rows = await self._rows(query)
        totals = Totals()
        try:
            for row in rows:
                totals.add(row.totals.counters, row.totals.currency_code)
        except MixedCurrencies as exc:
            raise _mixed(exc) from exc
        page = rows[offset : offset + page_size]
        end = offset + len(page)
        return pb.QueryUsageResponse(
            rows=[queries.usage_row(row, query.group_by) for row in page],
            totals=queries.usage_totals(totals),
            next_page_token=queries.offset_token(end) if end < len(rows) else "",
        )

    async def QueryTopUsage(  # noqa: N802 - the generated method name
        self, request: pb.QueryTopUsageRequest, context: Context
    ) -> pb.QueryTopUsageResponse:
        """The best ``limit`` values of the ranked dimension."""
        principal = principal_of(context.invocation_metadata())
        query, metric, limit = queries.top_query(request, principal, self._clock())
        rows = await self._rows(query)
        return pb.QueryTopUsageResponse(entries=queries.ranked(rows, metric, limit))

    async def QueryAuditLog(  # noqa: N802 - the generated method name
        self, request: pb.QueryAuditLogRequest, context: Context
    ) -> pb.QueryAuditLogResponse:
        """Entries newest first, one page."""
        principal = principal_of(context.invocation_metadata())
        query = queries.audit_query(request, principal, self._clock())
        found = await self._store.audit_entries(query)
        page = found[: query.limit - 1]
        entries = [json_format.Parse(body, common_pb2.AuditEntry()) for _, _, body in page]
        more = len(found) > len(page)
        last = page[-1] if page else None
        return pb.QueryAuditLogResponse(
            entries=entries,
            next_page_token=queries.audit_token(last[0], last[1]) if more and last else "",
        )

    async def _rows(self, query: UsageQuery) -> list[UsageRow]:
        try:
            return await self._store.usage_rows(query)
        except MixedCurrencies as exc:
            raise _mixed(exc) from exc


def _mixed(exc: MixedCurrencies) -> FailedPrecondition:
    return FailedPrecondition(
        f"{exc}; group by something that separates the currencies", reason="MIXED_CURRENCIES"
    )
