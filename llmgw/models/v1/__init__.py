"""Generated code of llmgw.models.v1; do not edit (tools/gen_protos.py)."""
