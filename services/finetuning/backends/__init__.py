"""Fine-tuning backends: the plugin interface (:mod:`.base`) and the built-in backends."""
