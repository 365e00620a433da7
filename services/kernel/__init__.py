"""The microkernel every llmgw process is built on."""
