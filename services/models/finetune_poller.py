"""Succeeded fine-tuning jobs without a shared event bus: ask the fine-tuning service.

On one laptop (``make run`` without Kafka) every process has its own
in-process bus, so the registry never sees the fine-tuning service's events.
There :class:`FineTunePoller` lists the service's SUCCEEDED jobs over gRPC
(``FineTuningService.ListJobs``, newest first) every ``interval_seconds`` and
hands each job it has not handled yet to
:meth:`~services.models.finetunes.FineTuneConsumer.register_or_skip`, which is
idempotent, so handling a job again (e.g. after a restart) changes nothing.
Paging stops at the first page whose jobs were all handled before.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from grpc import aio

from llmgw.finetuning.v1 import finetuning_pb2, finetuning_pb2_grpc
from services.models.finetunes import FineTuneConsumer

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PollerConfig:
    """Where the fine-tuning service is and how often to ask it."""

    address: str
    interval_seconds: float = 2.0
    page_size: int = 100
    timeout_seconds: float = 10.0


class FineTunePoller:
    """Registers succeeded jobs found by polling; run :meth:`run` as a task."""

    def __init__(self, consumer: FineTuneConsumer, config: PollerConfig) -> None:
        """Poll ``config.address`` and register through ``consumer``."""
        self._consumer = consumer
        self._config = config
        self._handled: set[str] = set()

    async def poll_once(self, stub: finetuning_pb2_grpc.FineTuningServiceAsyncStub) -> int:
        """Handle the succeeded jobs not handled yet; returns how many."""
        handled = 0
        token = ""
        while True:
            page = await stub.ListJobs(
                finetuning_pb2.ListJobsRequest(
                    page_size=self._config.page_size,
                    page_token=token,
                    states=[finetuning_pb2.JOB_STATE_SUCCEEDED],
                ),
                timeout=self._config.timeout_seconds,
            )
            fresh = [job for job in page.jobs if job.id not in self._handled]
            for job in reversed(fresh):
                await self._consumer.register_or_skip(job)
                self._handled.add(job.id)
                handled += 1
            token = page.next_page_token
            if not token or not fresh:
                return handled

    async def run(self) -> None:
        """Poll until cancelled; an unreachable service is retried at the next interval."""
        async with aio.insecure_channel(self._config.address) as channel:
            stub = finetuning_pb2_grpc.FineTuningServiceStub(channel)
            while True:
                try:
                    await self.poll_once(stub)
                except aio.AioRpcError as exc:
                    _log.debug("fine-tuning service not answering: %s", exc.code())
                await asyncio.sleep(self._config.interval_seconds)
