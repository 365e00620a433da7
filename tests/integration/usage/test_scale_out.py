"""Replicas of the usage process share the group's partitions; lag is exported per partition."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.integration.usage.support import (
    BASE_TIME,
    RunningUsage,
    eventually,
    producer_bus,
    running_usage,
    settings_for,
    usage_event,
)

pytestmark = pytest.mark.integration


def lag_samples(usage: RunningUsage, topic: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for metric in usage.registry.collect():
        if metric.name == "llmgw_usage_consumer_lag":
            for sample in metric.samples:
                if sample.labels.get("topic") == topic:
                    found[sample.labels["partition"]] = sample.value
    return found


async def test_two_replicas_share_the_work_and_count_every_event_once(
    sqlite_url: str, kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("usage")
    settings = settings_for(
        sqlite_url,
        kafka_bootstrap=kafka_bootstrap,
        usage_topic=topic,
        audit_topic=unique_name("audit"),
        group_id=unique_name("group"),
        max_batch_records=20,
    )
    processed = "llmgw_usage_events_processed_total"
    published = 0
    async with (
        running_usage(settings) as first,
        running_usage(settings) as second,
        producer_bus(kafka_bootstrap) as bus,
    ):

        async def both_working() -> bool:
            nonlocal published
            if first.metric(processed, topic=topic) and second.metric(processed, topic=topic):
                return True
            for _ in range(50):
                await bus.publish(topic, usage_event(f"req-{published}", at=BASE_TIME))
                published += 1
            return False

        await eventually(both_working, timeout=60)

        async def all_counted() -> bool:
            return (await first.totals()).request_count == published

        await eventually(all_counted, timeout=60)
        total = first.metric(processed, topic=topic) + second.metric(processed, topic=topic)
        assert total == published

        def caught_up() -> bool:
            lags = {**lag_samples(first, topic), **lag_samples(second, topic)}
            return bool(lags) and all(value == 0 for value in lags.values())

        await eventually(caught_up, timeout=30)
