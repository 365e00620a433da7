"""The OpenAI-compatible HTTP edge of the gateway.

=============  ==================================================================
``server``     the aiohttp listener: routes, the per-request downstream, streaming
``chat``       Chat Completions bodies <-> ``Complete``/``StreamComplete`` messages
``embeddings`` Embeddings bodies <-> ``Embed`` messages
``models``     ``ListModels`` as OpenAI model objects
``finetuning`` Files and Fine-tuning bodies <-> ``FineTuningService`` messages, paging
``errors``     ``google.rpc.Status`` -> OpenAI error JSON, HTTP status, retry headers
``fields``     typed reading of JSON request fields, naming the field that is wrong
=============  ==================================================================
"""
