"""Generated code of llmgw; do not edit (tools/gen_protos.py)."""
