"""Helpers shared by several test files (fixtures, case tables, expectation tables); never test modules."""
