"""Planetary Computer signing: SAS tokens appended to asset hrefs at read time, never stored.

Planetary Computer blobs are private; each read needs a short-lived SAS token (`?st=...&sig=...`)
from its token endpoint. sitsflow keeps every href UNSIGNED in `results/items/` and signs it
only when stackstac opens the file (`SigningReader`), so a long run never reads with a token
that expired after the search, and no token is ever written to results.

Tokens come from the `planetary-computer` package (`planetary_computer.sas.get_token`): one per
(storage account, container), cached and fetched again when less than a minute of validity is
left. The package reads its settings from the environment:

* `PC_SDK_SUBSCRIPTION_KEY` (optional): sent as a header to the token endpoint only. sitsflow
  never reads it, logs it or writes it anywhere.
* `PC_SDK_SAS_URL` (optional): the token endpoint, default
  `https://planetarycomputer.microsoft.com/api/sas/v1/token` (tests point it at 127.0.0.1).

Signed URLs can still surface in error messages (GDAL names the URL it failed on):
`redact` removes the signature, and `SigningReader` raises with redacted messages only.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs, urlsplit

import numpy as np
from stackstac.rio_reader import AutoParallelRioReader

if TYPE_CHECKING:
    from rasterio.windows import Window
    from stackstac.rio_reader import ThreadsafeRioDataset

SUBSCRIPTION_KEY_ENV = "PC_SDK_SUBSCRIPTION_KEY"
SAS_URL_ENV = "PC_SDK_SAS_URL"
AZURE_BLOB_SUFFIX = ".blob.core.windows.net"
# Query parameters of an Azure SAS token whose presence means "already signed".
SAS_MARKERS = frozenset({"st", "se", "sp", "sig"})
_SIGNATURE = re.compile(r"(?i)([?&]sig=)[^&\s'\"]*")
_token_lock = threading.Lock()

log = logging.getLogger(__name__)


def storage_container(href: str) -> tuple[str, str]:
    """(account, container) a token is requested for.

    `https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/...` -> (`sentinel2l2a01`,
    `sentinel2-l2`). Hrefs elsewhere (a mirror, the test server) use (host, first path segment).
    """
    parts = urlsplit(href)
    host = parts.hostname or ""
    container = parts.path.lstrip("/").split("/", 1)[0]
    account = host.removesuffix(AZURE_BLOB_SUFFIX) if host.endswith(AZURE_BLOB_SUFFIX) else host
    if not account or not container:
        raise ValueError(f"cannot tell the storage account and container of {redact(href)!r}")
    return account, container


def is_signed(href: str) -> bool:
    return bool(SAS_MARKERS & set(parse_qs(urlsplit(href).query)))


def sign_href(href: str) -> str:
    """`href` with a valid SAS token appended; non-HTTP and already signed hrefs unchanged."""
    if not href.startswith(("http://", "https://")) or is_signed(href):
        return href
    from planetary_computer.sas import get_token

    account, container = storage_container(href)
    with _token_lock:  # one token request when many reader threads start at once
        token = get_token(account, container)
    separator = "&" if urlsplit(href).query else "?"
    return f"{href}{separator}{token.token}"


def redact(text: str) -> str:
    """`text` with every SAS signature (`sig=...`) replaced by `sig=REDACTED`."""
    return _SIGNATURE.sub(r"\1REDACTED", text)


def reset_token_cache() -> None:
    """Forget cached tokens and settings, e.g. after changing the `PC_SDK_*` variables."""
    from planetary_computer.sas import TOKEN_CACHE
    from planetary_computer.settings import Settings

    TOKEN_CACHE.clear()
    Settings.get.cache_clear()


class RedactingFilter(logging.Filter):
    """Logging filter that removes SAS signatures from messages (GDAL warnings name URLs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def install_log_redaction() -> None:
    """Add a `RedactingFilter` to every handler of the root logger (idempotent)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())


# stackstac ships no type information, so its reader is `Any` to mypy.
class SigningReader(AutoParallelRioReader):  # type: ignore[misc]
    """stackstac reader that signs its href when it opens the file, i.e. at read time.

    The signed URL is used for the GDAL dataset only; `self.url` stays unsigned, and errors
    are re-raised with signatures redacted so that logs never hold a token.
    """

    url: str  # set by AutoParallelRioReader.__init__

    def _open(self) -> ThreadsafeRioDataset:
        unsigned = self.url
        try:
            self.url = sign_href(unsigned)
            return super()._open()
        except Exception as exc:
            raise RuntimeError(redact(str(exc))) from None
        finally:
            self.url = unsigned

    def read(self, window: Window, **kwargs: Any) -> np.ndarray:
        try:
            # A masked array as a rule (stackstac reads with masked=True): cast, don't convert.
            return cast(np.ndarray, super().read(window, **kwargs))
        except Exception as exc:
            raise RuntimeError(redact(str(exc))) from None
