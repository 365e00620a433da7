"""Generated code of llmgw.common.v1; do not edit (tools/gen_protos.py)."""
