"""Test package (lets tests/conftest.py load tests.fixtures_model under plain `pytest`)."""
