"""The FineTuningService servicer: request messages in, dataset and job calls, responses out.

Thin on purpose: rules live in :class:`~.datasets.Datasets` and
:class:`~.jobs.Jobs`, whose exceptions the kernel interceptor maps to status codes.

Projects: new datasets and jobs belong to the caller's project (from the
identity metadata the gateway forwards). A caller authenticated by an API key
of a project sees and acts on that project's datasets and jobs only; the
others answer NOT_FOUND, as if they did not exist. A caller without such an
identity (inside the cluster, not through the gateway) sees every project.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from grpc import aio

from llmgw.finetuning.v1 import finetuning_pb2 as ft
from llmgw.finetuning.v1 import finetuning_pb2_grpc
from services.finetuning import paging
from services.finetuning.datasets import Datasets, Upload
from services.finetuning.feed import JobFeed
from services.finetuning.jobs import Jobs
from services.finetuning.store import FineTuningStore
from services.kernel.errors import FieldViolation, InvalidArgument
from services.kernel.identity import Principal, principal_of

Context = aio.ServicerContext[object, object]

EVENTS_PAGE = "events"
CHECKPOINTS_PAGE = "ckpt"


def scope_of(principal: Principal) -> str:
    """The only project ``principal`` may see, or ``""`` for every project."""
    return principal.project_id if principal.api_key_id else ""


def _scope(context: Context) -> str:
    return scope_of(principal_of(context.invocation_metadata()))


class FineTuningServicer(finetuning_pb2_grpc.FineTuningServiceServicer):
    """Serves datasets, jobs and their event logs."""

    def __init__(
        self, datasets: Datasets, jobs: Jobs, feed: JobFeed, store: FineTuningStore, max_bytes: int
    ) -> None:
        """Serve over the given parts; uploads above ``max_bytes`` are refused early."""
        self._datasets = datasets
        self._jobs = jobs
        self._feed = feed
        self._store = store
        self._max_bytes = max_bytes

    async def UploadDataset(  # noqa: N802 - the generated method name
        self, request_iterator: AsyncIterator[ft.UploadDatasetRequest], context: Context
    ) -> ft.UploadDatasetResponse:
        metadata: ft.DatasetMetadata | None = None
        chunks: list[bytes] = []
        size = 0
        async for message in request_iterator:
            kind = message.WhichOneof("payload")
            if metadata is None:
                if kind != "metadata":
                    raise InvalidArgument(
                        "the first message must carry the metadata",
                        [FieldViolation("metadata", "must come first", "METADATA_FIRST")],
                    )
                metadata = message.metadata
                continue
            if kind != "chunk":
                raise InvalidArgument(
                    "only the first message may carry metadata",
                    [FieldViolation("metadata", "sent twice", "METADATA_TWICE")],
                )
            size += len(message.chunk)
            if size > self._max_bytes:
                raise InvalidArgument(
                    f"the dataset is larger than {self._max_bytes} bytes",
                    [FieldViolation("chunk", f"more than {self._max_bytes} bytes", "TOO_LARGE")],
                    reason="TOO_LARGE",
                )
            chunks.append(message.chunk)
        if metadata is None:
            raise InvalidArgument(
                "no metadata was sent", [FieldViolation("metadata", "is required")]
            )
        project = principal_of(context.invocation_metadata()).project_id
        dataset = await self._datasets.upload(Upload(metadata, b"".join(chunks), project))
        return ft.UploadDatasetResponse(dataset=dataset)

    async def GetDataset(  # noqa: N802 - the generated method name
        self, request: ft.GetDatasetRequest, context: Context
    ) -> ft.GetDatasetResponse:
        dataset = await self._datasets.get(request.dataset_id, _scope(context))
        return ft.GetDatasetResponse(dataset=dataset)

    async def ListDatasets(  # noqa: N802 - the generated method name
        self, request: ft.ListDatasetsRequest, context: Context
    ) -> ft.ListDatasetsResponse:
        datasets, token = await self._datasets.list(
            request.page_size, request.page_token, _scope(context)
        )
        return ft.ListDatasetsResponse(datasets=datasets, next_page_token=token)

    async def DeleteDataset(  # noqa: N802 - the generated method name
        self, request: ft.DeleteDatasetRequest, context: Context
    ) -> ft.DeleteDatasetResponse:
        await self._datasets.delete(request.dataset_id, _scope(context))
        return ft.DeleteDatasetResponse()

    async def CreateJob(  # noqa: N802 - the generated method name
        self, request: ft.CreateJobRequest, context: Context
    ) -> ft.CreateJobResponse:
        principal = principal_of(context.invocation_metadata())
        job = await self._jobs.create(request, principal.project_id, scope_of(principal))
        return ft.CreateJobResponse(job=job)

    async def GetJob(  # noqa: N802 - the generated method name
        self, request: ft.GetJobRequest, context: Context
    ) -> ft.GetJobResponse:
        return ft.GetJobResponse(job=await self._jobs.get(request.job_id, _scope(context)))

    async def ListJobs(  # noqa: N802 - the generated method name
        self, request: ft.ListJobsRequest, context: Context
    ) -> ft.ListJobsResponse:
        jobs, token = await self._jobs.list(request, _scope(context))
        return ft.ListJobsResponse(jobs=jobs, next_page_token=token)

    async def CancelJob(  # noqa: N802 - the generated method name
        self, request: ft.CancelJobRequest, context: Context
    ) -> ft.CancelJobResponse:
        return ft.CancelJobResponse(job=await self._jobs.cancel(request.job_id, _scope(context)))

    async def WatchJob(  # noqa: N802 - the generated method name
        self, request: ft.WatchJobRequest, context: Context
    ) -> AsyncIterator[ft.WatchJobResponse]:
        await self._jobs.get(request.job_id, _scope(context))
        async for stored in self._feed.watch(request.job_id, request.after_sequence):
            yield ft.WatchJobResponse(event=stored.event, job=stored.job)

    async def ListJobEvents(  # noqa: N802 - the generated method name
        self, request: ft.ListJobEventsRequest, context: Context
    ) -> ft.ListJobEventsResponse:
        await self._jobs.get(request.job_id, _scope(context))
        limit = paging.page_size_of(request.page_size)
        after = max(request.after_sequence, paging.decode_int(request.page_token, EVENTS_PAGE))
        rows = await self._store.events(request.job_id, after, limit)
        token = paging.encode(EVENTS_PAGE, rows[-1].event.sequence) if len(rows) == limit else ""
        return ft.ListJobEventsResponse(events=[row.event for row in rows], next_page_token=token)

    async def ListJobCheckpoints(  # noqa: N802 - the generated method name
        self, request: ft.ListJobCheckpointsRequest, context: Context
    ) -> ft.ListJobCheckpointsResponse:
        await self._jobs.get(request.job_id, _scope(context))
        limit = paging.page_size_of(request.page_size)
        after = paging.decode_int(request.page_token, CHECKPOINTS_PAGE)
        rows = await self._store.checkpoints(request.job_id, after, limit)
        token = paging.encode(CHECKPOINTS_PAGE, rows[-1].step) if len(rows) == limit else ""
        return ft.ListJobCheckpointsResponse(checkpoints=rows, next_page_token=token)
