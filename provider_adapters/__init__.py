"""Provider adapters: the plugins through which the inference service reaches LLM providers."""
