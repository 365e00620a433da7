"""The model registry: models, versions, aliases, groups, and the change feed."""
