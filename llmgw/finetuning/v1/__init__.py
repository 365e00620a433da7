"""Generated code of llmgw.finetuning.v1; do not edit (tools/gen_protos.py)."""
