"""Generated code of llmgw.admin.v1; do not edit (tools/gen_protos.py)."""
