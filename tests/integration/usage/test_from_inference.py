"""From the inference service to the usage queries: every request served counted exactly.

The real inference process publishes its ``UsageRecorded`` events to a real
broker; the real usage process consumes them. The totals must equal the sums
of the usage and cost the inference service answered with.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from llmgw.inference.v1 import inference_pb2
from llmgw.usage.v1 import usage_pb2
from tests.integration.inference.app_support import running_app
from tests.integration.inference.app_support import settings_for as inference_settings
from tests.integration.inference.helpers import completion
from tests.integration.usage.support import (
    BASE_TIME,
    eventually,
    running_usage,
    settings_for,
    time_range,
)

pytestmark = pytest.mark.integration


async def test_usage_totals_equal_what_inference_answered(
    tmp_path: Path, sqlite_url: str, kafka_bootstrap: str, unique_name: Callable[[str], str]
) -> None:
    topic = unique_name("usage")
    served = inference_settings(tmp_path, kafka_bootstrap=kafka_bootstrap, topic=topic)
    usage_settings = settings_for(
        sqlite_url,
        kafka_bootstrap=kafka_bootstrap,
        usage_topic=topic,
        audit_topic=unique_name("audit"),
        group_id=unique_name("group"),
    )
    results: list[inference_pb2.CompletionResult] = []
    async with running_app(served) as inference, running_usage(usage_settings) as usage:
        for n in range(12):
            request = completion(text=f"prompt number {n}", tags={"team": f"t{n % 2}"})
            response = await inference.stub.Complete(
                inference_pb2.CompleteRequest(completion=request)
            )
            results.append(response.result)

        async def counted() -> bool:
            return (await usage.totals()).request_count == len(results)

        await eventually(counted, timeout=60)
        by_tag = await usage.stub.QueryUsage(
            usage_pb2.QueryUsageRequest(
                time_range=time_range(BASE_TIME - 86400),
                group_by=[usage_pb2.USAGE_DIMENSION_TAG, usage_pb2.USAGE_DIMENSION_MODEL],
                group_by_tag_key="team",
            )
        )
    totals = by_tag.totals
    assert totals.usage.input_tokens == sum(r.usage.input_tokens for r in results)
    assert totals.usage.output_tokens == sum(r.usage.output_tokens for r in results)
    assert totals.cost.total_nanos == sum(r.cost.total_nanos for r in results)
    assert totals.cost.total_nanos > 0
    assert [(row.group.tag_value, row.group.model, row.totals.request_count)
            for row in by_tag.rows] == [("t0", "sim", 6), ("t1", "sim", 6)]  # fmt: skip
