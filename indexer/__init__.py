"""newsdesk indexer: corpus -> chunks -> vectors + lexical index -> ranked, cited passages."""

__version__ = "0.1.0"
