"""Wire formats of the providers shipped with llmgw, one module per provider."""
