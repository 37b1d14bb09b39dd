"""Data access: SQLAlchemy Core tables and the queries of each resource, run through `databases`."""
