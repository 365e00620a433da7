"""The usage service: usage, cost and audit queries over what the Kafka consumers aggregate."""
