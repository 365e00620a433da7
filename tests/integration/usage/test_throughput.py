"""How fast the pipeline drains a backlog: events per second, SQL and Redis included.

Run with ``.venv/bin/pytest -m slow -s tests/integration/usage/test_throughput.py``;
the figures are printed and written to ``bench/results/usage_pipeline.json``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.usage.support import (
    BASE_TIME,
    eventually,
    running_usage,
    settings_for,
)
from tests.integration.usage.test_failures import publish_all, served

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EVENTS = 20_000
RESULT = Path(__file__).resolve().parents[3] / "bench" / "results" / "usage_pipeline.json"


async def test_backlog_drain_rate(
    database_url: str,
    kafka_bootstrap: str,
    redis_url: str,
    redis_prefix: str,
    unique_name: Callable[[str], str],
) -> None:
    topic = unique_name("usage")
    await publish_all(kafka_bootstrap, topic, served(EVENTS, "bench"))
    settings = settings_for(
        database_url,
        kafka_bootstrap=kafka_bootstrap,
        redis_url=redis_url,
        usage_topic=topic,
        audit_topic=unique_name("audit"),
        group_id=unique_name("group"),
        spend_namespace=redis_prefix.rstrip(":"),
    )
    started = time.perf_counter()
    async with running_usage(settings) as usage:

        def drained() -> bool:
            return usage.metric("llmgw_usage_events_processed_total", topic=topic) == EVENTS

        await eventually(drained, timeout=600)
        elapsed = time.perf_counter() - started
        assert (await usage.totals(BASE_TIME)).request_count == EVENTS
    dialect = "sqlite" if database_url.startswith("sqlite") else "postgresql"
    rate = EVENTS / elapsed
    print(f"\n{dialect}: {EVENTS} events in {elapsed:.1f}s = {rate:.0f} events/s")
    results = json.loads(RESULT.read_text()) if RESULT.exists() else {}
    results[dialect] = {"events": EVENTS, "seconds": round(elapsed, 2), "per_second": round(rate)}
    RESULT.write_text(json.dumps(results, indent=2) + "\n")
