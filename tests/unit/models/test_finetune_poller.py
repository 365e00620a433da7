"""The registry's poller for succeeded fine-tuning jobs, over a listing it pages through."""

from __future__ import annotations

from llmgw.finetuning.v1 import finetuning_pb2 as ft
from services.models.finetune_poller import FineTunePoller, PollerConfig


class Listing:
    """Succeeded jobs, newest created first, one per page (the service's order)."""

    def __init__(self) -> None:
        self.jobs: list[str] = []

    async def ListJobs(  # noqa: N802 - the generated method name
        self, request: ft.ListJobsRequest, *, timeout: float | None = None
    ) -> ft.ListJobsResponse:
        start = int(request.page_token or 0)
        page = self.jobs[start : start + request.page_size]
        more = start + request.page_size < len(self.jobs)
        return ft.ListJobsResponse(
            jobs=[ft.Job(id=job_id) for job_id in page],
            next_page_token=str(start + request.page_size) if more else "",
        )


class Registered:
    def __init__(self) -> None:
        self.ids: list[str] = []

    async def register_or_skip(self, job: ft.Job) -> None:
        self.ids.append(job.id)


async def test_a_long_job_that_succeeds_after_newer_ones_is_still_found() -> None:
    listing, registered = Listing(), Registered()
    poller = FineTunePoller(registered, PollerConfig(address="unused", page_size=1))
    listing.jobs = ["c", "b"]  # "a" was created first and is still running
    assert await poller.poll_once(listing) == 2
    listing.jobs = ["c", "b", "a"]  # now it succeeded too, behind two handled pages
    assert await poller.poll_once(listing) == 1
    assert registered.ids == ["c", "b", "a"]
    assert await poller.poll_once(listing) == 0
