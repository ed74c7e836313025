"""The apps the harness serves: a resource of the tests' own (records) and the service with
routes that sleep, in Python or in PostgreSQL (sleepy), for tests and benchmarks alike."""
