"""Succeeded fine-tuning jobs without a shared event bus: ask the fine-tuning service.

On one laptop (``make run`` without Kafka) every process has its own
in-process bus, so the registry never sees the fine-tuning service's events.
There :class:`FineTunePoller` lists the service's SUCCEEDED jobs over gRPC
(``FineTuningService.ListJobs``, newest first) every ``interval_seconds`` and
hands each job it has not handled yet to
:meth:`~services.models.finetunes.FineTuneConsumer.register_or_skip`, which is
idempotent, so handling a job again (e.g. after a restart) changes nothing.
Every poll reads every page: jobs are listed by creation, so a long job that
succeeds after newer ones may sit behind pages handled before.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from grpc import aio

from llmgw.finetuning.v1 import finetuning_pb2, finetuning_pb2_grpc

_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PollerConfig:
    """Where the fine-tuning service is and how often to ask it."""

    address: str
    interval_seconds: float = 2.0
    page_size: int = 100
    timeout_seconds: float = 10.0


class Registrar(Protocol):
    """What registers a succeeded job (:class:`~services.models.finetunes.FineTuneConsumer`)."""

    async def register_or_skip(self, job: finetuning_pb2.Job) -> None:
        """Register ``job``'s result, idempotently."""
        ...


class JobLister(Protocol):
    """The part of the fine-tuning service's stub the poller calls."""

    @property
    def ListJobs(  # noqa: N802 - the generated method name
        self,
    ) -> Callable[..., Awaitable[finetuning_pb2.ListJobsResponse]]:
        """One page of jobs per call."""
        ...


class FineTunePoller:
    """Registers succeeded jobs found by polling; run :meth:`run` as a task."""

    def __init__(self, consumer: Registrar, config: PollerConfig) -> None:
        """Poll ``config.address`` and register through ``consumer``."""
        self._consumer = consumer
        self._config = config
        self._handled: set[str] = set()

    async def poll_once(self, stub: JobLister) -> int:
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
            if not token:
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
