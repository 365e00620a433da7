"""Generated code of llmgw.events.v1; do not edit (tools/gen_protos.py)."""
