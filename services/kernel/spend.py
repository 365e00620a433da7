"""The spend ledger: money spent per API key and project per budget period, in Redis.

The usage pipeline writes it from the usage events; the gateway's budget filter
reads it before each call. Both go through this module, so the key layout lives
in one place::

    <namespace>:spend:{<namespace>-spend}:<currency>:<subject kind>:<subject id>:<period>:<YYYYMMDD>

where ``<YYYYMMDD>`` is the first day of the period (UTC; weeks start on Monday,
months on the 1st, as ``llmgw.admin.v1.BudgetPeriod`` says) and ``<namespace>``
is ``llmgw`` unless configured. Values are integer nanos of the currency. All keys
of a namespace share one hash tag, so one
script can update a key's and its project's counters atomically on Redis Cluster too.

Recording is idempotent by event id: :meth:`SpendLedger.record` marks the id and
adds to every counter in one Lua script, and a second record of the same id
(a replayed or duplicated event) changes nothing while the mark lives
(``dedupe_window``). Counters expire a day after their period ends; spend of a
period whose counter has already expired is not recorded (nobody reads it any more).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import redis.asyncio as redis

from services.kernel.cache import LuaScript

DEFAULT_NAMESPACE = "llmgw"
_GRACE = timedelta(days=1)


class BudgetPeriod(enum.Enum):
    """Length of a budget period; the values are the names used in keys."""

    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class SubjectKind(enum.Enum):
    """Who spent: an API key or a project (all its keys together)."""

    API_KEY = "key"
    PROJECT = "project"


@dataclass(frozen=True, slots=True)
class SpendSubject:
    """An API key or a project, by id."""

    kind: SubjectKind
    id: str


def period_window(period: BudgetPeriod, at: datetime) -> tuple[datetime, datetime]:
    """Start (inclusive) and end (exclusive) in UTC of the ``period`` that holds ``at``."""
    day = at.astimezone(UTC).date()
    if period is BudgetPeriod.DAY:
        start, end = day, day + timedelta(days=1)
    elif period is BudgetPeriod.WEEK:
        start = day - timedelta(days=day.weekday())
        end = start + timedelta(days=7)
    else:
        start = day.replace(day=1)
        end = (start + timedelta(days=32)).replace(day=1)
    return _midnight(start), _midnight(end)


def counter_key(
    currency: str,
    subject: SpendSubject,
    period: BudgetPeriod,
    at: datetime,
    namespace: str = DEFAULT_NAMESPACE,
) -> str:
    """The Redis key of ``subject``'s spend in ``currency`` during the ``period`` holding ``at``."""
    start, _ = period_window(period, at)
    return (
        f"{_prefix(namespace)}:{currency}:{subject.kind.value}:{subject.id}:"
        f"{period.value}:{start:%Y%m%d}"
    )


def _prefix(namespace: str) -> str:
    return f"{namespace}:spend:{{{namespace}-spend}}"


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


# KEYS[1] = the event's dedupe mark, KEYS[2..] = counters.
# ARGV[1] = mark TTL (s), ARGV[2] = nanos, ARGV[3..] = expiry (unix s) of each counter.
_RECORD = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  return 0
end
local now = tonumber(redis.call('TIME')[1])
for i = 2, #KEYS do
  if tonumber(ARGV[i + 1]) > now then  -- a counter already expired is not made again
    redis.call('INCRBY', KEYS[i], ARGV[2])
    redis.call('EXPIREAT', KEYS[i], ARGV[i + 1])
  end
end
return 1
"""


class SpendLedger:
    """Reads and records spend counters on one Redis client (see the module docstring)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        namespace: str = DEFAULT_NAMESPACE,
        dedupe_window: timedelta = timedelta(days=2),
    ) -> None:
        """Use ``client`` under ``namespace``; an event id is remembered for ``dedupe_window``."""
        self._client = client
        self._namespace = namespace
        self._dedupe_seconds = int(dedupe_window.total_seconds())
        self._record = LuaScript(client, _RECORD, decode=bool)

    async def record(
        self,
        event_id: str,
        currency: str,
        subjects: Sequence[SpendSubject],
        nanos: int,
        at: datetime,
    ) -> bool:
        """Add ``nanos`` spent at ``at`` to every period's counter of every subject.

        Returns False, changing nothing, when ``event_id`` was already recorded.
        Raises :class:`redis.exceptions.RedisError` when Redis fails; then
        either everything or nothing was added, and the call can be retried.
        """
        keys = [f"{_prefix(self._namespace)}:seen:{event_id}"]
        expiries: list[int] = []
        for subject in subjects:
            for period in BudgetPeriod:
                keys.append(counter_key(currency, subject, period, at, self._namespace))
                expiries.append(int((period_window(period, at)[1] + _GRACE).timestamp()))
        return await self._record(keys=keys, args=[self._dedupe_seconds, nanos, *expiries])

    async def spent(
        self,
        currency: str,
        queries: Sequence[tuple[SpendSubject, BudgetPeriod]],
        at: datetime,
    ) -> list[int]:
        """Nanos spent by each (subject, period) in the period holding ``at``; one round trip."""
        if not queries:
            return []
        keys = [
            counter_key(currency, subject, period, at, self._namespace)
            for subject, period in queries
        ]
        values = await self._client.mget(keys)
        return [int(value) if value is not None else 0 for value in values]
