"""The fine-tuning service: datasets, jobs, events and checkpoints."""
