"""The JSON API: one module per resource, each a blueprint."""
