"""Datasets over gRPC: upload, validation report, listing, deletion and their rejections."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc import aio

from llmgw.finetuning.v1 import finetuning_pb2 as ft
from tests.integration.finetuning.conftest import (
    ACTOR,
    BASE_MODEL,
    CHAT_LINE,
    Pair,
    chat_dataset,
    upload,
)
from tests.integration.models.rpc_errors import violations

BAD = (
    CHAT_LINE
    + "\n{not json\n"
    + '{"messages": [{"role": "robot", "content": "beep"}]}\n'
    + "\n"
    + '{"messages": [{"role": "user", "content": "hi"}]}\n'
)


async def test_a_valid_upload_is_ready_with_counts_checksum_and_cost(pair: Pair) -> None:
    content = chat_dataset(4)
    dataset = await upload(
        pair.finetuning,
        content,
        metadata=ft.DatasetMetadata(
            display_name="tickets.jsonl",
            size_bytes=len(content),
            sha256=hashlib.sha256(content).hexdigest(),
            labels={"team": "support"},
        ),
    )

    assert dataset.status == ft.DATASET_STATUS_READY
    assert dataset.line_count == 4 and dataset.error_count == 0
    assert dataset.sha256 == hashlib.sha256(content).hexdigest()
    assert dataset.size_bytes == len(content)
    assert dataset.token_count > 0 and dataset.max_example_tokens * 4 == dataset.token_count
    assert dataset.estimated_epoch_cost.currency_code == "USD"
    assert dataset.estimated_epoch_cost.amount_nanos == dataset.token_count * 3000
    assert dataset.project_id == "support" and dict(dataset.labels) == {"team": "support"}
    fetched = await pair.finetuning.GetDataset(ft.GetDatasetRequest(dataset_id=dataset.id))
    assert fetched.dataset == dataset


async def test_every_bad_line_is_reported_with_its_number_and_reason(pair: Pair) -> None:
    dataset = await upload(pair.finetuning, BAD.encode())

    assert dataset.status == ft.DATASET_STATUS_INVALID
    assert dataset.line_count == 4 and dataset.error_count == 4
    assert [(e.line, e.code, e.field_path) for e in dataset.errors] == [
        (2, "INVALID_JSON", ""),
        (3, "UNKNOWN_ROLE", "messages[0].role"),
        (3, "NO_ASSISTANT_MESSAGE", "messages"),
        (5, "NO_ASSISTANT_MESSAGE", "messages"),
    ]


async def test_prompt_completion_datasets_are_checked_in_their_format(pair: Pair) -> None:
    content = b'{"prompt": "2+2=", "completion": "4"}\n{"prompt": "3+3="}\n'
    dataset = await upload(
        pair.finetuning,
        content,
        metadata=ft.DatasetMetadata(format=ft.DATASET_FORMAT_PROMPT_COMPLETION_JSONL),
    )
    assert dataset.format == ft.DATASET_FORMAT_PROMPT_COMPLETION_JSONL
    assert [(e.line, e.code) for e in dataset.errors] == [(2, "MISSING_COMPLETION")]


async def test_the_base_models_context_window_limits_an_example(pair: Pair) -> None:
    long_line = (
        '{"messages": [{"role": "user", "content": "'
        + "x" * 4000
        + '"}, {"role": "assistant", "content": "ok"}]}\n'
    )
    content = (CHAT_LINE + "\n" + long_line).encode()
    dataset = await upload(
        pair.finetuning,
        content,
        metadata=ft.DatasetMetadata(base_model=f"{BASE_MODEL}@production"),
    )
    assert [(e.line, e.code) for e in dataset.errors] == [(2, "TOO_MANY_TOKENS")]


@pytest.mark.parametrize(
    ("metadata", "field"),
    [
        (ft.DatasetMetadata(size_bytes=3), "metadata.size_bytes"),
        (ft.DatasetMetadata(sha256="0" * 64), "metadata.sha256"),
    ],
)
async def test_an_upload_that_does_not_match_its_metadata_is_invalid_argument(
    pair: Pair, metadata: ft.DatasetMetadata, field: str
) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await upload(pair.finetuning, chat_dataset(), metadata=metadata)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert list(violations(caught.value)) == [field]


async def test_an_upload_without_metadata_first_is_invalid_argument(pair: Pair) -> None:
    async def chunks_only() -> AsyncIterator[ft.UploadDatasetRequest]:
        yield ft.UploadDatasetRequest(chunk=chat_dataset())

    with pytest.raises(aio.AioRpcError) as caught:
        await pair.finetuning.UploadDataset(chunks_only(), metadata=ACTOR)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert list(violations(caught.value)) == ["metadata"]


async def test_an_upload_naming_an_unknown_base_model_is_not_found(pair: Pair) -> None:
    with pytest.raises(aio.AioRpcError) as caught:
        await upload(
            pair.finetuning, chat_dataset(), metadata=ft.DatasetMetadata(base_model="nobody")
        )
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND


async def test_datasets_list_newest_first_by_cursor_and_deleted_ones_are_gone(pair: Pair) -> None:
    created = [await upload(pair.finetuning, chat_dataset(n)) for n in (1, 2, 3)]
    first = await pair.finetuning.ListDatasets(ft.ListDatasetsRequest(page_size=2))
    second = await pair.finetuning.ListDatasets(
        ft.ListDatasetsRequest(page_size=2, page_token=first.next_page_token)
    )
    listed = [d.id for d in [*first.datasets, *second.datasets]]
    assert listed == [d.id for d in reversed(created)]
    assert second.next_page_token == ""

    await pair.finetuning.DeleteDataset(ft.DeleteDatasetRequest(dataset_id=created[0].id))

    with pytest.raises(aio.AioRpcError) as caught:
        await pair.finetuning.GetDataset(ft.GetDatasetRequest(dataset_id=created[0].id))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(aio.AioRpcError) as caught:
        await pair.finetuning.DeleteDataset(ft.DeleteDatasetRequest(dataset_id=created[0].id))
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    remaining = await pair.finetuning.ListDatasets(ft.ListDatasetsRequest())
    assert [d.id for d in remaining.datasets] == [d.id for d in reversed(created[1:])]


async def test_a_bad_page_token_or_size_is_invalid_argument(pair: Pair) -> None:
    for bad in (
        ft.ListDatasetsRequest(page_token="garbage"),
        ft.ListDatasetsRequest(page_size=-1),
    ):
        with pytest.raises(aio.AioRpcError) as caught:
            await pair.finetuning.ListDatasets(bad)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
