"""Generated code of llmgw.admin; do not edit (tools/gen_protos.py)."""
