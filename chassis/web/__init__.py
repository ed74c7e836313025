"""The web surface: the Flask app the chassis builds, the envelope and its one writer,
errors, validation, operations and the API document, health, the metrics listener."""
