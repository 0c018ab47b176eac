"""The only package with SQL: one module per aggregate, statement next to its function."""
