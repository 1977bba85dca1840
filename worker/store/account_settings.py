"""An account's own settings (one document per account, in the document store): its default
webhook endpoint — used when an upload or update through the API or the console names none."""

from __future__ import annotations

from urllib.parse import urlsplit

from worker.core.errors import ErrorCode, PermanentError
from worker.store.kv import AccountDocs, Txn


class AccountSettings(AccountDocs):
    prefix = "settings"

    def webhook_url(self, account: str) -> str | None:
        value = self._doc(account).get("webhookUrl")
        return value if isinstance(value, str) and value else None

    def set_webhook_url(self, account: str, url: str | None) -> None:
        """The account's default endpoint (``None`` or empty: none). An http(s) URL; where it
        may be sent is the egress policy's to say when a webhook goes out."""
        url = (url or "").strip() or None
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > 2048:
                raise PermanentError(f"webhookUrl: {url[:100]!r} is not an http(s) URL",
                                     code=ErrorCode.INVALID_REQUEST)
        key = self._key(account)

        def txn(cur: dict) -> Txn[None]:
            doc = {k: v for k, v in (cur[key] or {}).items() if k != "webhookUrl"}
            if url is not None:
                doc["webhookUrl"] = url
            return Txn(writes={key: doc})

        self.kv.transact([key], txn)
