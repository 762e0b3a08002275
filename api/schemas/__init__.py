"""Pydantic request and response schemas; the same models validate requests and feed the OpenAPI document."""
