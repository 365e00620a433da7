"""Datasets: receive, check, count, price and store uploaded training files.

An upload is validated completely before it is stored: the content goes to
the blob store under the dataset id and the metadata row to SQL, with the
status READY (no bad line) or INVALID (see ``errors``). Size and checksum
given in the metadata must match the content (INVALID_ARGUMENT otherwise).
A dataset is deleted only when no unfinished job uses it (FAILED_PRECONDITION
otherwise); its row stays, marked deleted, so later use is a clear error.

Every dataset belongs to the project that uploaded it. The reading and
deleting methods take a ``scope``: a project whose datasets alone exist for
the call (another project's answers NOT_FOUND, like an unknown id), or
``""`` for every project (a caller inside the cluster).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from llmgw.common.v1 import common_pb2
from llmgw.finetuning.v1 import finetuning_pb2 as ft
from services.finetuning import paging
from services.finetuning.blobs import BlobStore
from services.finetuning.registry_client import RegistryClient
from services.finetuning.settings import FineTuningSection
from services.finetuning.store import FineTuningStore
from services.finetuning.validation import Limits, validate
from services.kernel.errors import FailedPrecondition, FieldViolation, InvalidArgument, NotFound

CURRENCY = "USD"
DATASETS_PAGE = "ds"


def new_id(prefix: str) -> str:
    """A fresh time-ordered id such as ``ds_0190f3a1c2...``."""
    return f"{prefix}_{time.time_ns():016x}{uuid.uuid4().hex[:12]}"


def cost_of(tokens: int, price_per_million_nanos: int) -> common_pb2.Money:
    """The price of ``tokens`` trained tokens."""
    return common_pb2.Money(
        currency_code=CURRENCY, amount_nanos=tokens * price_per_million_nanos // 1_000_000
    )


@dataclass(frozen=True, slots=True)
class Upload:
    """A received upload: its metadata, content and the uploading project."""

    metadata: ft.DatasetMetadata
    content: bytes
    project_id: str


class Datasets:
    """The dataset operations of the service."""

    def __init__(
        self,
        store: FineTuningStore,
        blobs: BlobStore,
        registry: RegistryClient,
        settings: FineTuningSection,
        price_per_million_nanos: Callable[[], int],
    ) -> None:
        """Keep datasets in ``store`` and ``blobs``; price estimates by the given price."""
        self._store = store
        self._blobs = blobs
        self._registry = registry
        self._settings = settings
        self._price = price_per_million_nanos

    async def upload(self, upload: Upload) -> ft.Dataset:
        """Validate and store an upload (see the module docstring)."""
        metadata, content = upload.metadata, upload.content
        digest = hashlib.sha256(content).hexdigest()
        problems = []
        if metadata.size_bytes and metadata.size_bytes != len(content):
            problems.append(
                FieldViolation(
                    "metadata.size_bytes",
                    f"{metadata.size_bytes} announced, {len(content)} received",
                    "SIZE_MISMATCH",
                )
            )
        if metadata.sha256 and metadata.sha256.lower() != digest:
            problems.append(
                FieldViolation("metadata.sha256", "does not match the content", "CHECKSUM_MISMATCH")
            )
        if problems:
            raise InvalidArgument(
                "the upload does not match its metadata", problems, reason=problems[0].reason
            )
        max_tokens = self._settings.default_max_example_tokens
        if metadata.base_model:
            base = await self._registry.resolve(metadata.base_model, "metadata.base_model")
            max_tokens = base.version.context_window or max_tokens
        fmt = metadata.format or ft.DATASET_FORMAT_CHAT_JSONL
        limits = Limits(
            max_bytes=self._settings.max_dataset_bytes,
            max_lines=self._settings.max_dataset_lines,
            min_lines=self._settings.min_dataset_lines,
            max_example_tokens=max_tokens,
        )
        report = await asyncio.to_thread(validate, content, fmt, limits)
        created = time.time_ns()
        dataset = ft.Dataset(
            id=new_id("ds"),
            display_name=metadata.display_name,
            project_id=upload.project_id,
            format=fmt,
            status=ft.DATASET_STATUS_READY if report.valid else ft.DATASET_STATUS_INVALID,
            size_bytes=len(content),
            sha256=digest,
            line_count=report.line_count,
            error_count=report.error_count,
            errors=report.errors,
            labels=dict(metadata.labels),
            token_count=report.token_count,
            max_example_tokens=report.max_example_tokens,
            estimated_epoch_cost=cost_of(report.token_count, self._price()),
        )
        dataset.create_time.FromNanoseconds(created)
        await self._blobs.put(dataset.id, content)
        await self._store.insert_dataset(dataset, created)
        return dataset

    async def get(self, dataset_id: str, scope: str = "") -> ft.Dataset:
        """A dataset not deleted, in ``scope``; NOT_FOUND otherwise."""
        found = await self._find(dataset_id, scope)
        if found is None or found[1]:
            raise NotFound("dataset", dataset_id, reason="DATASET_NOT_FOUND")
        return found[0]

    async def _find(self, dataset_id: str, scope: str) -> tuple[ft.Dataset, bool] | None:
        found = await self._store.dataset(dataset_id)
        if found is None or (scope and found[0].project_id != scope):
            return None
        return found

    async def list(
        self, page_size: int, page_token: str, scope: str = ""
    ) -> tuple[list[ft.Dataset], str]:
        """A page of datasets in ``scope``, newest first, and the next page's token."""
        limit = paging.page_size_of(page_size)
        before = paging.decode_created(page_token, DATASETS_PAGE)
        rows = await self._store.datasets(before, limit, scope)
        token = ""
        if len(rows) == limit:
            token = paging.encode(DATASETS_PAGE, rows[-1][0], rows[-1][1].id)
        return [dataset for _, dataset in rows], token

    async def delete(self, dataset_id: str, scope: str = "") -> None:
        """Delete a dataset in ``scope`` no unfinished job uses."""
        await self.get(dataset_id, scope)
        if not await self._store.mark_dataset_deleted(dataset_id):
            raise FailedPrecondition(
                f"dataset {dataset_id!r} is used by a job that has not finished",
                reason="DATASET_IN_USE",
            )
        await self._blobs.delete(dataset_id)

    async def usable(self, dataset_id: str, field: str, scope: str = "") -> ft.Dataset:
        """A READY dataset for a job: NOT_FOUND when unknown, deleted or not in
        ``scope``, FAILED_PRECONDITION when it has errors."""
        if not dataset_id:
            raise InvalidArgument(f"{field} is required", [FieldViolation(field, "is required")])
        found = await self._find(dataset_id, scope)
        if found is None:
            raise NotFound(
                "dataset",
                dataset_id,
                f"{field}: no dataset {dataset_id!r}",
                reason="DATASET_NOT_FOUND",
            )
        dataset, deleted = found
        if deleted:
            raise NotFound(
                "dataset",
                dataset_id,
                f"{field}: dataset {dataset_id!r} was deleted",
                reason="DATASET_DELETED",
            )
        if dataset.status != ft.DATASET_STATUS_READY:
            raise FailedPrecondition(
                f"{field}: dataset {dataset_id!r} has {dataset.error_count} invalid lines",
                reason="DATASET_INVALID",
            )
        return dataset

    async def content(self, dataset_id: str) -> bytes:
        """The stored content of a dataset."""
        return await self._blobs.get(dataset_id)
