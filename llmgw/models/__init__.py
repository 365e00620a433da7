"""Generated code of llmgw.models; do not edit (tools/gen_protos.py)."""
