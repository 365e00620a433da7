"""Generated code of llmgw.common; do not edit (tools/gen_protos.py)."""
