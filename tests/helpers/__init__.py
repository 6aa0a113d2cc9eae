"""Helpers the tests share, one module per topic; test modules and conftest import from here,
never from each other."""
