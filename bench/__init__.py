"""The throughput harness of issue 7: a script, not a test. See bench/README.md."""
