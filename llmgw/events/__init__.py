"""Generated code of llmgw.events; do not edit (tools/gen_protos.py)."""
