"""The compute marketplace's Python SDK (`Client`) and command line (`cm`)."""

from .client import ApiError, Client
from .config import Config, load_config
from .query import QueryError, parse_query

__all__ = ["ApiError", "Client", "Config", "QueryError", "load_config", "parse_query"]
