"""llmgw services: one package per service, sharing the kernel."""
