"""Who may call the gateway: API keys, JWTs, scopes, model allowlists and audit.

- :mod:`.api_keys`: the API key format, generation and constant-time checks;
- :mod:`.tokens`: JWT verification against a JWKS file or URL;
- :mod:`.scopes`: which scope each RPC method needs;
- :mod:`.grants`: what an authenticated caller may do, and the records it comes from;
- :mod:`.authenticator` and :mod:`.authorizer`: the checks the filters and the admin API run;
- :mod:`.cache`: keys, projects and policies in memory, refreshed from SQL by revision;
- :mod:`.audit`: ``AuditRecorded`` events, published without holding a call up.
"""
