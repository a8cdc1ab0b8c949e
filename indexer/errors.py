"""The exceptions newsdesk raises; the CLI and the API translate them in one place each."""


class NewsdeskError(Exception):
    """Base class for errors that carry a message meant for the user."""


class CorpusError(NewsdeskError):
    """The corpus directory or file cannot be read at all."""


class IndexNotFound(NewsdeskError):
    """No published index exists at the given directory."""


class IncompatibleIndex(NewsdeskError):
    """The index was built by another format version or embedding model."""


class CorruptIndex(NewsdeskError):
    """An index file is missing, truncated or inconsistent with the manifest."""


class IndexBusy(NewsdeskError):
    """Another build holds the index root's lock; try again when it finishes."""


class InvalidQuery(NewsdeskError):
    """A search request is malformed (empty query, bad mode, bad dates, k out of range)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
