"""Generated code of llmgw.inference.v1; do not edit (tools/gen_protos.py)."""
