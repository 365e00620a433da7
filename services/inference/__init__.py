"""The inference service: completions (unary, streaming, bidirectional), embeddings."""
