"""Generated code of llmgw.usage; do not edit (tools/gen_protos.py)."""
