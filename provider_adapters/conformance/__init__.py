"""The conformance kit: every provider adapter's contract, checked against a real HTTP server.

* :mod:`provider_adapters.conformance.wire` -- what a provider's fake must produce;
* :mod:`provider_adapters.conformance.wire_hooks` -- optional extra checks a wire may offer;
* :mod:`provider_adapters.conformance.fake_server` -- the scripted HTTP/1.1 server;
* :mod:`provider_adapters.conformance.suite` -- the scenarios, as a pytest class to subclass;
* :mod:`provider_adapters.conformance.wires` -- the wires of the providers shipped with llmgw.

The suite needs pytest and pytest-asyncio; nothing here is imported at run time.
"""
