"""Generated code of llmgw.inference; do not edit (tools/gen_protos.py)."""
