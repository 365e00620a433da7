"""The OpenAI-compatible HTTP edge: OpenAI's REST API served as llmgw gRPC calls, in process.

=============================  ==============================================
HTTP                           gRPC call (``llmgw.inference.v1.InferenceService``)
=============================  ==============================================
POST /v1/chat/completions      ``Complete``; with ``"stream": true``
                               ``StreamComplete`` as server-sent events
POST /v1/embeddings            ``Embed``
GET  /v1/models                ``ListModels`` (every page)
GET  /v1/models/{model}        ``ListModels``, the one model (404 when absent)
=============================  ==============================================

=====================================  ==========================================
HTTP                                   gRPC call (``llmgw.finetuning.v1.FineTuningService``)
=====================================  ==========================================
POST /v1/files (multipart)             ``UploadDataset``, the file streamed in chunks
GET  /v1/files                         ``ListDatasets``
GET  /v1/files/{id}                    ``GetDataset``
DELETE /v1/files/{id}                  ``DeleteDataset``
POST /v1/fine_tuning/jobs              ``CreateJob``
GET  /v1/fine_tuning/jobs              ``ListJobs``
GET  /v1/fine_tuning/jobs/{id}         ``GetJob``
POST /v1/fine_tuning/jobs/{id}/cancel  ``CancelJob``
GET  .../jobs/{id}/events              ``ListJobEvents``
GET  .../jobs/{id}/checkpoints         ``ListJobCheckpoints``
=====================================  ==========================================

An uploaded file whose lines are not valid training examples is answered with 400
naming the first bad lines (and is not kept). The multipart ``purpose`` field must
be ``fine-tune`` and come before ``file`` (as the ``openai`` package sends them).

Each request is translated to the call's request message and handed to the same
:class:`~gateway.proxy.Proxy` behaviour the gRPC listener uses, with an
:class:`HttpDownstream` standing for the caller: the call runs through the same
filter chain (authentication, limits, budgets, access log, metrics), route and
cluster, without a second network hop. The request headers named by
``gateway.http.forwarded_headers`` (by default ``Authorization``, ``x-request-id``
and ``user-agent``) become the call's metadata exactly so (``authorization: Bearer
<key>``), and the request id is bound as for a gRPC call (the caller's
``x-request-id`` when well-formed) and echoed in the response.

A call that ends with a status is answered with OpenAI's error JSON and HTTP status
(see :mod:`gateway.http.errors`). In a stream, an error before the first event is
such a response; after it, the error is sent as one SSE event ``{"error": {...}}``
and the stream ends without ``[DONE]``, so clients raise instead of seeing a cut
stream. A client that disconnects cancels its handler, and with it the upstream call.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, NoReturn

import grpc
import orjson
from aiohttp import BodyPartReader, web
from google.rpc import status_pb2

from gateway.filters.base import Metadata
from gateway.http.chat import SSE_DONE, ChatStream, completion_body, parse_chat, sse
from gateway.http.embeddings import embeddings_body, parse_embeddings
from gateway.http.errors import OpenAIError, error_of_status, status_of_call
from gateway.http.fields import bad
from gateway.http.finetuning import (
    check_purpose,
    checkpoint_object,
    event_object,
    file_deleted,
    file_object,
    job_object,
    limit_of,
    line_errors,
    list_body,
    page_after,
    parse_create_job,
)
from gateway.http.models import model_object, models_body
from gateway.proxy import ClientStreamBehavior, Proxy, ServerStreamBehavior, UnaryBehavior
from gateway.routes import RouteTable
from gateway.settings import HttpSettings
from llmgw.finetuning.v1 import finetuning_pb2 as ft
from llmgw.inference.v1 import inference_pb2
from services.kernel.context import REQUEST_ID_HEADER, bind_request_id, current_request_id
from services.kernel.errors import (
    FieldViolation,
    Internal,
    InvalidArgument,
    LlmgwError,
    NotFound,
    Unimplemented,
)
from services.kernel.interceptors import request_id_from

_log = logging.getLogger("llmgw.gateway.http")

INFERENCE = "llmgw.inference.v1.InferenceService"
COMPLETE = f"/{INFERENCE}/Complete"
STREAM_COMPLETE = f"/{INFERENCE}/StreamComplete"
EMBED = f"/{INFERENCE}/Embed"
LIST_MODELS = f"/{INFERENCE}/ListModels"
FINETUNING = "llmgw.finetuning.v1.FineTuningService"
UPLOAD_DATASET = f"/{FINETUNING}/UploadDataset"
GET_DATASET = f"/{FINETUNING}/GetDataset"
LIST_DATASETS = f"/{FINETUNING}/ListDatasets"
DELETE_DATASET = f"/{FINETUNING}/DeleteDataset"
CREATE_JOB = f"/{FINETUNING}/CreateJob"
GET_JOB = f"/{FINETUNING}/GetJob"
LIST_JOBS = f"/{FINETUNING}/ListJobs"
CANCEL_JOB = f"/{FINETUNING}/CancelJob"
LIST_JOB_EVENTS = f"/{FINETUNING}/ListJobEvents"
LIST_JOB_CHECKPOINTS = f"/{FINETUNING}/ListJobCheckpoints"
UPLOAD_CHUNK_BYTES = 256 * 1024
"""Bytes of the uploaded file per ``UploadDataset`` message."""

MODELS_PAGE_SIZE = 1000
MAX_MODEL_PAGES = 100
JSON = "application/json"
SSE_HEADERS = {"content-type": "text/event-stream", "cache-control": "no-cache"}


class CallEnded(Exception):
    """Raised by :meth:`HttpDownstream.abort`: the call ended with a non-OK status."""

    def __init__(self, code: grpc.StatusCode, message: str, trailers: Metadata) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.trailers = trailers

    def status(self) -> status_pb2.Status:
        """The rich status the call ended with."""
        return status_of_call(self.code, self.message, self.trailers)


class HttpDownstream:
    """The caller of one HTTP request, as the proxy sees it (a :class:`~gateway.proxy.Downstream`).

    HTTP calls carry no deadline (the route's timeout applies). A unary-request call's
    one message is given with the call; a client-streaming call's messages come from
    ``requests``. Responses of a stream go to ``on_message``.
    """

    __slots__ = ("_metadata", "_on_message", "_peer", "_requests", "trailers")

    def __init__(
        self,
        metadata: Metadata,
        peer: str,
        on_message: Callable[[bytes], Awaitable[None]] | None = None,
        requests: AsyncIterator[bytes] | None = None,
    ) -> None:
        self._metadata = metadata
        self._peer = peer
        self._on_message = on_message
        self._requests = requests
        self.trailers: Metadata = ()

    def invocation_metadata(self) -> Metadata:
        return self._metadata

    def peer(self) -> str:
        return self._peer

    def time_remaining(self) -> float | None:
        return None

    async def read(self) -> Any:
        if self._requests is None:
            return None  # the one request message was given with the call: end of stream
        return await anext(self._requests, None)

    async def write(self, message: bytes) -> None:
        assert self._on_message is not None, "a unary call writes no messages"
        await self._on_message(message)

    async def send_initial_metadata(self, initial_metadata: Any) -> None:
        return None

    def set_trailing_metadata(self, trailing_metadata: Any) -> None:
        self.trailers = tuple(trailing_metadata or ())

    async def abort(self, code: grpc.StatusCode, details: str, trailing_metadata: Any) -> NoReturn:
        raise CallEnded(code, details, tuple(trailing_metadata or ()))


def _check_metadata(metadata: Metadata) -> None:
    """Refuse header values gRPC metadata cannot carry (it takes printable ASCII only)."""
    for name, value in metadata:
        if isinstance(value, str) and not (value.isascii() and value.isprintable()):
            raise InvalidArgument(
                f"header {name} must be printable ASCII",
                [FieldViolation(name, "must be printable ASCII")],
                reason="INVALID_HEADER",
            )


def _peer(request: web.Request) -> str:
    peername = request.transport.get_extra_info("peername") if request.transport else None
    if not peername:
        return "unknown"
    host, port = peername[0], peername[1]
    return f"ipv6:[{host}]:{port}" if ":" in host else f"ipv4:{host}:{port}"


def _error_response(error: OpenAIError) -> web.Response:
    headers = {**error.headers(), REQUEST_ID_HEADER: current_request_id()}
    return web.Response(
        status=error.http_status, body=error.body(), content_type=JSON, headers=headers
    )


def _json_response(body: bytes) -> web.Response:
    return web.Response(
        body=body, content_type=JSON, headers={REQUEST_ID_HEADER: current_request_id()}
    )


class _TooLarge(Exception):
    """The request body is over ``max_body_bytes``."""


async def _read_json(request: web.Request) -> object:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise _TooLarge(exc.text or "request body too large") from exc
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument("the request body is not valid JSON", reason="INVALID_JSON") from exc


class HttpEdge:
    """The HTTP listener of the gateway; calls go through ``proxy`` to ``routes``."""

    def __init__(self, settings: HttpSettings, proxy: Proxy, routes: RouteTable) -> None:
        self.settings = settings
        self.port = 0
        self._complete = self._unary(proxy, routes, COMPLETE)
        self._embed = self._unary(proxy, routes, EMBED)
        self._list_models = self._unary(proxy, routes, LIST_MODELS)
        route = routes.match(STREAM_COMPLETE)
        self._stream_complete: ServerStreamBehavior | None = (
            proxy.server_stream(STREAM_COMPLETE, route) if route is not None else None
        )
        route = routes.match(UPLOAD_DATASET)
        self._upload_dataset: ClientStreamBehavior | None = (
            proxy.client_stream(UPLOAD_DATASET, route) if route is not None else None
        )
        self._get_dataset = self._unary(proxy, routes, GET_DATASET)
        self._list_datasets = self._unary(proxy, routes, LIST_DATASETS)
        self._delete_dataset = self._unary(proxy, routes, DELETE_DATASET)
        self._create_job = self._unary(proxy, routes, CREATE_JOB)
        self._get_job = self._unary(proxy, routes, GET_JOB)
        self._list_jobs = self._unary(proxy, routes, LIST_JOBS)
        self._cancel_job = self._unary(proxy, routes, CANCEL_JOB)
        self._list_job_events = self._unary(proxy, routes, LIST_JOB_EVENTS)
        self._list_job_checkpoints = self._unary(proxy, routes, LIST_JOB_CHECKPOINTS)
        self._runner: web.AppRunner | None = None

    @staticmethod
    def _unary(proxy: Proxy, routes: RouteTable, method: str) -> UnaryBehavior | None:
        route = routes.match(method)
        return proxy.unary(method, route) if route is not None else None

    def application(self) -> web.Application:
        """The aiohttp application of the edge's routes."""
        app = web.Application(client_max_size=self.settings.max_body_bytes)
        app.router.add_post("/v1/chat/completions", self._handle(self._chat))
        app.router.add_post("/v1/embeddings", self._handle(self._embeddings))
        app.router.add_get("/v1/models", self._handle(self._models))
        app.router.add_get("/v1/models/{model:.+}", self._handle(self._model))
        app.router.add_post("/v1/files", self._handle(self._upload_file))
        app.router.add_get("/v1/files", self._handle(self._files))
        app.router.add_get("/v1/files/{id}", self._handle(self._file))
        app.router.add_delete("/v1/files/{id}", self._handle(self._delete_file))
        app.router.add_post("/v1/fine_tuning/jobs", self._handle(self._create_fine_tuning_job))
        app.router.add_get("/v1/fine_tuning/jobs", self._handle(self._jobs))
        app.router.add_get("/v1/fine_tuning/jobs/{id}", self._handle(self._job))
        app.router.add_post("/v1/fine_tuning/jobs/{id}/cancel", self._handle(self._cancel))
        app.router.add_get("/v1/fine_tuning/jobs/{id}/events", self._handle(self._events))
        app.router.add_get("/v1/fine_tuning/jobs/{id}/checkpoints", self._handle(self._checkpoints))
        app.router.add_route("*", "/{tail:.*}", self._handle(self._unknown))
        return app

    async def start(self) -> int:
        """Listen; returns the bound port (useful when ``port`` is 0)."""
        runner = web.AppRunner(
            self.application(),
            handle_signals=False,
            access_log=None,
            handler_cancellation=True,
            keepalive_timeout=self.settings.keepalive_seconds,
            shutdown_timeout=self.settings.shutdown_grace_seconds,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.settings.host, self.settings.port, reuse_port=False)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        _log.info("http edge serving", extra={"address": f"{self.settings.host}:{self.port}"})
        return self.port

    async def stop(self) -> None:
        """Stop listening; in-flight requests get ``shutdown_grace_seconds`` to finish."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    @asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        """Serve while the context is open."""
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    # Handlers ------------------------------------------------------------------------

    def _handle(
        self, serve: Callable[[web.Request, Metadata], Awaitable[web.StreamResponse]]
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """Bind the request id, then answer errors raised before or by the call."""

        forwarded = self.settings.forwarded_headers

        async def handler(request: web.Request) -> web.StreamResponse:
            headers = request.headers
            metadata = tuple((name, headers[name]) for name in forwarded if name in headers)
            bind_request_id(request_id_from(metadata))
            try:
                _check_metadata(metadata)
                return await serve(request, metadata)
            except CallEnded as ended:
                return _error_response(error_of_status(ended.status()))
            except LlmgwError as exc:
                return _error_response(error_of_status(exc.to_status()))
            except _TooLarge as exc:
                return _error_response(
                    OpenAIError(413, "invalid_request_error", str(exc), code="request_too_large")
                )
            except Exception as exc:
                _log.error("http request crashed", extra={"path": request.path}, exc_info=exc)
                return _error_response(error_of_status(Internal(str(exc)).to_status()))

        return handler

    async def _call(
        self, behavior: UnaryBehavior | None, request: web.Request, metadata: Metadata, body: bytes
    ) -> bytes:
        if behavior is None:
            raise Unimplemented("the gateway has no route for this API", reason="NO_ROUTE")
        return await behavior(body, HttpDownstream(metadata, _peer(request)))

    async def _chat(self, request: web.Request, metadata: Metadata) -> web.StreamResponse:
        chat = parse_chat(await _read_json(request))
        model = chat.completion.model
        if chat.stream:
            return await self._chat_stream(request, metadata, chat.completion, chat.include_usage)
        message = inference_pb2.CompleteRequest(completion=chat.completion)
        raw = await self._call(self._complete, request, metadata, message.SerializeToString())
        result = inference_pb2.CompleteResponse.FromString(raw).result
        return _json_response(completion_body(result, model))

    async def _chat_stream(
        self,
        request: web.Request,
        metadata: Metadata,
        completion: inference_pb2.CompletionRequest,
        include_usage: bool,
    ) -> web.StreamResponse:
        behavior = self._stream_complete
        if behavior is None:
            raise Unimplemented("the gateway has no route for this API", reason="NO_ROUTE")
        events = ChatStream(current_request_id(), completion.model, include_usage=include_usage)
        response = web.StreamResponse(
            headers={**SSE_HEADERS, REQUEST_ID_HEADER: current_request_id()}
        )

        async def on_message(raw: bytes) -> None:
            if not response.prepared:
                await response.prepare(request)
            data = events.events(inference_pb2.StreamCompleteResponse.FromString(raw))
            if data:
                await response.write(data)

        message = inference_pb2.StreamCompleteRequest(completion=completion)
        downstream = HttpDownstream(metadata, _peer(request), on_message)
        try:
            await behavior(message.SerializeToString(), downstream)
        except CallEnded as ended:
            if not response.prepared:
                raise
            with contextlib.suppress(ConnectionError):  # the client may be gone already
                await response.write(sse(error_of_status(ended.status()).payload()))
                await response.write_eof()
            return response
        except Exception:
            if not response.prepared:
                raise
            # Writing to the client failed (it went away): the upstream call is cancelled.
            _log.debug("stream to the client ended early", exc_info=True)
            return response
        if not response.prepared:
            await response.prepare(request)
        await response.write(SSE_DONE)
        await response.write_eof()
        return response

    async def _embeddings(self, request: web.Request, metadata: Metadata) -> web.StreamResponse:
        parsed = parse_embeddings(await _read_json(request))
        raw = await self._call(self._embed, request, metadata, parsed.embed.SerializeToString())
        response = inference_pb2.EmbedResponse.FromString(raw)
        return _json_response(embeddings_body(response, parsed.embed.model, b64=parsed.base64))

    async def _all_models(
        self, request: web.Request, metadata: Metadata
    ) -> list[inference_pb2.ModelInfo]:
        models: list[inference_pb2.ModelInfo] = []
        page = inference_pb2.ListModelsRequest(page_size=MODELS_PAGE_SIZE)
        for _ in range(MAX_MODEL_PAGES):
            raw = await self._call(self._list_models, request, metadata, page.SerializeToString())
            listed = inference_pb2.ListModelsResponse.FromString(raw)
            models.extend(listed.models)
            if not listed.next_page_token:
                break
            page.page_token = listed.next_page_token
        return models

    async def _models(self, request: web.Request, metadata: Metadata) -> web.StreamResponse:
        return _json_response(models_body(await self._all_models(request, metadata)))

    async def _model(self, request: web.Request, metadata: Metadata) -> web.StreamResponse:
        name = request.match_info["model"]
        for model in await self._all_models(request, metadata):
            if model.name == name:
                return _json_response(orjson.dumps(model_object(model)))
        raise NotFound("model", name, f"model {name!r} does not exist", reason="MODEL_NOT_FOUND")

    # Files and fine-tuning jobs ----------------------------------------------------------

    async def _upload_file(self, request: web.Request, metadata: Metadata) -> web.StreamResponse:
        """Stream the multipart ``file`` to ``UploadDataset``; 400 when it is not valid."""
        behavior = self._upload_dataset
        if behavior is None:
            raise Unimplemented("the gateway has no route for this API", reason="NO_ROUTE")
        if not request.content_type.startswith("multipart/"):
            raise bad("body", "must be multipart/form-data with the fields purpose and file")
        reader = await request.multipart()
        purpose: str | None = None
        raw: bytes | None = None
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise bad("body", "must not nest multipart bodies")
            if part.name == "purpose":
                purpose = await part.text()
                check_purpose(purpose)
            elif part.name == "file" and raw is None:
                if purpose is None:
                    raise bad("purpose", "is required, before file")
                downstream = HttpDownstream(metadata, _peer(request), requests=_upload(part))
                raw = await behavior(downstream)
            else:
                await part.release()
        if raw is None:
            raise bad("file", "is required")
        dataset = ft.UploadDatasetResponse.FromString(raw).dataset
        if dataset.status == ft.DATASET_STATUS_INVALID:
            forget = ft.DeleteDatasetRequest(dataset_id=dataset.id)
            await self._call(self._delete_dataset, request, metadata, forget.SerializeToString())
            problem = line_errors(dataset)
            raise InvalidArgument(
                f"the file is not a valid training file: {problem}",
                [FieldViolation("file", problem)],
                reason="INVALID_FILE",
            )
        return _json_response(orjson.dumps(file_object(dataset)))

    async def _files(self, request: web.Request, metadata: Metadata) -> web.StreamResponse:
        query = request.query
        limit = limit_of(query.get("limit"))
        if query.get("purpose", "fine-tune") != "fine-tune":
            return _json_response(list_body([], False))

        async def fetch(page_size: int, token: str) -> tuple[Sequence[ft.Dataset], str]:
            ask = ft.ListDatasetsRequest(page_size=page_size, page_token=token)
            raw = await self._call(self._list_datasets, request, metadata, ask.SerializeToString())
            listed = ft.ListDatasetsResponse.FromString(raw)
            return listed.datasets, listed.next_page_token

        page = await page_after(fetch, _id_of, query.get("after"), limit)
        return _json_response(list_body([file_object(d) for d in page.items], page.has_more))

    async def _file(self, request: web.Request, metadata: Metadata) -> web.StreamResponse:
        ask = ft.GetDatasetRequest(dataset_id=request.match_info["id"])
        raw = await self._call(self._get_dataset, request, metadata, ask.SerializeToString())
        dataset = ft.GetDatasetResponse.FromString(raw).dataset
        return _json_response(orjson.dumps(file_object(dataset)))

    async def _delete_file(self, request: web.Request, metadata: Metadata) -> web.StreamResponse:
        file_id = request.match_info["id"]
        ask = ft.DeleteDatasetRequest(dataset_id=file_id)
        await self._call(self._delete_dataset, request, metadata, ask.SerializeToString())
        return _json_response(file_deleted(file_id))

    async def _create_fine_tuning_job(
        self, request: web.Request, metadata: Metadata
    ) -> web.StreamResponse:
        create = parse_create_job(await _read_json(request))
        raw = await self._call(self._create_job, request, metadata, create.SerializeToString())
        job = ft.CreateJobResponse.FromString(raw).job
        return _json_response(orjson.dumps(job_object(job)))

    async def _jobs(self, request: web.Request, metadata: Metadata) -> web.StreamResponse:
        query = request.query
        limit = limit_of(query.get("limit"))

        async def fetch(page_size: int, token: str) -> tuple[Sequence[ft.Job], str]:
            ask = ft.ListJobsRequest(page_size=page_size, page_token=token)
            raw = await self._call(self._list_jobs, request, metadata, ask.SerializeToString())
            listed = ft.ListJobsResponse.FromString(raw)
            return listed.jobs, listed.next_page_token

        page = await page_after(fetch, _id_of, query.get("after"), limit)
        return _json_response(list_body([job_object(job) for job in page.items], page.has_more))

    async def _job(self, request: web.Request, metadata: Metadata) -> web.StreamResponse:
        ask = ft.GetJobRequest(job_id=request.match_info["id"])
        raw = await self._call(self._get_job, request, metadata, ask.SerializeToString())
        return _json_response(orjson.dumps(job_object(ft.GetJobResponse.FromString(raw).job)))

    async def _cancel(self, request: web.Request, metadata: Metadata) -> web.StreamResponse:
        ask = ft.CancelJobRequest(job_id=request.match_info["id"])
        raw = await self._call(self._cancel_job, request, metadata, ask.SerializeToString())
        return _json_response(orjson.dumps(job_object(ft.CancelJobResponse.FromString(raw).job)))

    async def _events(self, request: web.Request, metadata: Metadata) -> web.StreamResponse:
        job_id, query = request.match_info["id"], request.query
        limit = limit_of(query.get("limit"))

        async def fetch(page_size: int, token: str) -> tuple[Sequence[ft.JobEvent], str]:
            ask = ft.ListJobEventsRequest(job_id=job_id, page_size=page_size, page_token=token)
            raw = await self._call(
                self._list_job_events, request, metadata, ask.SerializeToString()
            )
            listed = ft.ListJobEventsResponse.FromString(raw)
            return listed.events, listed.next_page_token

        page = await page_after(fetch, _id_of, query.get("after"), limit)
        return _json_response(list_body([event_object(e) for e in page.items], page.has_more))

    async def _checkpoints(self, request: web.Request, metadata: Metadata) -> web.StreamResponse:
        job_id, query = request.match_info["id"], request.query
        limit = limit_of(query.get("limit"))

        async def fetch(page_size: int, token: str) -> tuple[Sequence[ft.Checkpoint], str]:
            ask = ft.ListJobCheckpointsRequest(job_id=job_id, page_size=page_size, page_token=token)
            raw = await self._call(
                self._list_job_checkpoints, request, metadata, ask.SerializeToString()
            )
            listed = ft.ListJobCheckpointsResponse.FromString(raw)
            return listed.checkpoints, listed.next_page_token

        page = await page_after(fetch, _id_of, query.get("after"), limit)
        return _json_response(list_body([checkpoint_object(c) for c in page.items], page.has_more))

    async def _unknown(self, request: web.Request, metadata: Metadata) -> web.StreamResponse:
        raise NotFound(
            "path", request.path, f"unknown path {request.method} {request.path}", reason="NO_PATH"
        )


def _id_of(item: ft.Dataset | ft.Job | ft.JobEvent | ft.Checkpoint) -> str:
    return item.id


async def _upload(part: BodyPartReader) -> AsyncIterator[bytes]:
    """The ``UploadDataset`` messages of a multipart file: its name, then its content."""
    first = ft.UploadDatasetRequest(
        metadata=ft.DatasetMetadata(display_name=part.filename or "upload.jsonl")
    )
    yield first.SerializeToString()
    while chunk := await part.read_chunk(UPLOAD_CHUNK_BYTES):
        yield ft.UploadDatasetRequest(chunk=chunk).SerializeToString()
