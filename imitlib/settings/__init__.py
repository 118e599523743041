"""Params schema, one module per section of params/base.yaml."""
