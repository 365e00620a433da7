"""Generated code of llmgw.usage.v1; do not edit (tools/gen_protos.py)."""
