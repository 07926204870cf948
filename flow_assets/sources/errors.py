"""The distinct ways a fetch from an exchange archive can fail.

Every failure raises; nothing partial is ever returned as if it were complete.
"""

from __future__ import annotations


class SourceError(Exception):
    """Any failure to obtain or read an archive file."""


class NotPublishedError(SourceError):
    """The period is not in the archive yet (404 for files that may still appear)."""


class MissingFileError(SourceError):
    """A file is absent inside a published range (404 where the archive has later files)."""


class ChecksumMismatchError(SourceError):
    """The file's sha256 differs from its CHECKSUM file, also after one fresh retry."""


class CorruptArchiveError(SourceError):
    """The zip (or gzip) cannot be read although it downloaded completely."""


class DownloadError(SourceError):
    """The server kept failing (connection errors, 5xx, 429, truncated bodies) past the retries."""


class ArchiveDefectError(SourceError):
    """The archive holds a known defect that would give wrong trades (e.g. one-sided trades)."""


class MalformedCsvError(SourceError):
    """A CSV line that cannot be read as a trade; ``file`` and ``line`` (1-based) locate it."""

    def __init__(self, file: str, line: int | None, reason: str) -> None:
        where = f"{file}, line {line}" if line is not None else file
        super().__init__(f"malformed CSV {where}: {reason}")
        self.file = file
        self.line = line
        self.reason = reason


class MissingContractValueError(SourceError):
    """A trade whose size is in contracts has no contract value in force at its time."""
