"""The edge: an Envoy-style gRPC proxy in front of the llmgw services.

::

    client --> listener (TLS/mTLS) --> kernel interceptor --> routed service handler
           --> filter chain (access_log, metrics, ...) --> route --> cluster
           --> balancer (round robin | least request) --> endpoint channel --> upstream
    HTTP client --> http edge (OpenAI JSON <-> llmgw messages) --> same filter chain ...

=====================  ===============================================================
``settings``           the ``gateway:`` config section (listener, filters, clusters, routes)
``edge``               the gateway assembled from its settings; ``app`` the process plugin
``filters/``           the filter interface (``base``) and one module per filter
``chain``              builds the filters by name and runs their hooks per call
``proxy``              forwards the four call shapes as raw bytes, with retries, for the
                       gRPC listener and the HTTP edge alike
``http/``              the OpenAI-compatible HTTP edge: OpenAI's REST API as the same calls
``services_handler``   the gRPC handler of each routed service (method -> route, shape)
``routes``             service and method-prefix matching to clusters
``clusters/``          endpoints, discovery (static, DNS), balancers, health checks,
                       outlier ejection, retry budget, upstream channels and TLS
``metadata``           which metadata crosses the gateway, each way
``model_field``        reads a request's ``model`` from its bytes, for filters
``tls``                listener certificates, reloaded when their files change
``api_descriptors``    the upstream APIs, for reflection and call shapes
=====================  ===============================================================
"""
