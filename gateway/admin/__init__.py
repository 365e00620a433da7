"""The admin API (``llmgw.admin.v1.AdminService``) the gateway serves itself.

- :mod:`.schema`: the ``admin`` component's SQL migrations;
- :mod:`.store`: SQL access and the change revision replicas poll;
- :mod:`.records`: stored protos as the in-memory records of the hot path;
- :mod:`.api`: the rules (validation, existence, key generation);
- :mod:`.servicer`: authentication, authorization and audit around each RPC;
- :mod:`.bootstrap`: the first admin key of an empty installation;
- :mod:`.runtime`: opening and closing it all with the gateway.
"""
