"""Generated code of llmgw.finetuning; do not edit (tools/gen_protos.py)."""
