"""Delivery: which bytes a file URL names, whether the caller may have them, and the
derivatives (thumbnails, transformations) computed once and kept.

A URL is ``<account endpoint>/[tr:<chain>/]<filePath>[?tr=<chain>][&updatedAt=<ms>]``
(``worker.core.urls``). A file with ``isPublished: false`` is not served; one with
``isPrivateFile: true`` only under a valid signature, checked exactly as the SDKs compute it
(``helper.build_url(signed=True, expires_in=…)``): ``ik-s`` = HMAC-SHA1, keyed by one of the
account's private keys, of the URL after the endpoint (``ik-`` parameters left out) followed
by ``ik-t`` (the expiry, epoch seconds; ``9999999999`` when none is given).

A derivative is named by the version and the normalised chain (``derived/<fileId>/
<versionId>/<sha256>.<ext>``) and computed once: concurrent first requests in one process
share one computation, those of other processes wait on a Redis lock for its result. It
runs on a bounded pool of ``EXTWORKER_DELIVERY_THREADS``; beyond ``EXTWORKER_DELIVERY_QUEUE``
waiting derivations, ``Busy`` (a 503 with Retry-After) — delivery never piles up work or
starves the rest of the API.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from worker.core.errors import BlobNotFound, Busy, NotFound, Unauthorized
from worker.core.records import FileRecord, StoredVersion
from worker.core.settings import Settings
from worker.core.urls import RASTER, epoch_ms
from worker.core.video import VIDEO_MIMES
from worker.delivery.render import output_format, render
from worker.delivery.transform import FORMATS, VIDEO_FORMATS, Chain, TransformError, parse
from worker.store.apikeys import ApiKeys
from worker.store.blobs import BlobStore
from worker.store.files import FileStore

NO_EXPIRY = 9999999999
LOCK_MS = 60_000
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass
class Target:
    record: FileRecord
    version: StoredVersion
    chain: Chain
    immutable: bool  # a versioned URL: these bytes forever
    expires: int | None  # a signed URL's ik-t


@dataclass
class Derived:
    key: str
    size: int
    mime: str
    etag: str
    computed: bool
    data: bytes | None  # in memory when this request computed it


def signature(private_key: str, signed_part: str, expiry: int) -> str:
    """What the SDKs put in ``ik-s``."""
    return hmac.new(private_key.encode(), f"{signed_part}{expiry}".encode(),
                    hashlib.sha1).hexdigest()


def split_signed(rel_raw: str, raw_query: str) -> tuple[str, str | None, str | None]:
    """``(the part that was signed, ik-t, ik-s)`` of a request: the raw path after the
    endpoint and the raw query, without the ``ik-`` parameters, as the SDK built them."""
    kept, expiry, sig = [], None, None
    for part in raw_query.split("&") if raw_query else []:
        name = part.split("=", 1)[0]
        if name == "ik-t":
            expiry = part.split("=", 1)[1] if "=" in part else ""
        elif name == "ik-s":
            sig = part.split("=", 1)[1] if "=" in part else ""
        else:
            kept.append(part)
    return rel_raw + ("?" + "&".join(kept) if kept else ""), expiry, sig


class Delivery:
    def __init__(self, settings: Settings, blobs: BlobStore, files: FileStore, keys: ApiKeys,
                 redis: Any = None, on_derive: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.blobs = blobs
        self.files = files
        self.keys = keys
        self.redis = redis
        self.on_derive = on_derive or (lambda outcome: None)
        self.clock = clock
        self.pool = ThreadPoolExecutor(settings.delivery_threads,
                                       thread_name_prefix="extworker-derive")
        self._flights: dict[str, asyncio.Future[Derived]] = {}

    # --- which bytes ------------------------------------------------------------

    def locate(self, account: str, path: str, query: dict[str, str], rel_raw: str,
               raw_query: str) -> Target:
        """The version and chain a URL names, once the caller may have them."""
        path_tr = None
        first, _, rest = path.partition("/")
        if first.startswith("tr:") and rest:
            path_tr, path = first[3:], rest
        chain = parse(path_tr, query.get("tr"))
        record = self.files.by_path(account, "/" + path)
        if record is None or not record.isPublished:
            raise NotFound(f"The requested file does not exist: /{path}")
        expires = None
        if record.isPrivateFile:
            expires = self._check_signature(account, rel_raw, raw_query)
        version, immutable = record.current, False
        wanted = query.get("updatedAt")
        if wanted and wanted.isdigit():
            for v in record.versions:
                if epoch_ms(v.createdAt) == int(wanted):
                    version, immutable = v, True
        if chain.format == "mp4" and version.mime != "image/gif":
            raise TransformError(f"f-mp4: applies to GIFs (gif-to-video; this file is "
                                 f"{version.mime})")
        if chain and version.mime not in RASTER and version.mime not in VIDEO_MIMES:
            raise TransformError(f"tr: transformations apply to images only (this file is "
                                 f"{version.mime})")
        if chain and (version.width or 0) * (version.height or 0) > \
                self.settings.max_image_pixels:
            raise TransformError(f"tr: the image has more than the "
                                 f"{self.settings.max_image_pixels} pixels transformations "
                                 "may read")
        return Target(record, version, chain, immutable, expires)

    def _check_signature(self, account: str, rel_raw: str, raw_query: str) -> int:
        signed, expiry_text, sig = split_signed(rel_raw, raw_query)
        if not sig:
            raise Unauthorized("a private file is served only under a signed URL (ik-s)")
        if expiry_text is None:
            expiry = NO_EXPIRY
        elif expiry_text.isdigit():
            expiry = int(expiry_text)
        else:
            raise Unauthorized("ik-t: not a timestamp")
        if expiry < self.clock():
            raise Unauthorized("the signed URL has expired (ik-t)")
        for key in self.keys.signing_keys(account):
            if hmac.compare_digest(signature(key, signed, expiry), sig.lower()):
                return expiry
        raise Unauthorized("the URL's signature (ik-s) does not match")

    # --- derivatives --------------------------------------------------------------

    def output(self, target: Target, accept: str) -> str:
        return output_format(target.chain, target.version.mime, "image/webp" in accept)

    def derivative_key(self, target: Target, fmt: str) -> tuple[str, str]:
        digest = hashlib.sha256(f"{target.chain.text()}|{fmt}".encode()).hexdigest()[:24]
        v = target.version
        return f"derived/{target.record.fileId}/{v.id}/{digest}.{fmt}", f"{v.id}-{digest[:12]}"

    async def derive(self, target: Target, fmt: str) -> Derived:
        """The derivative of ``target`` as ``fmt``: stored, or computed once for everyone
        asking now."""
        key, etag = self.derivative_key(target, fmt)
        flight = self._flights.get(key)
        if flight is None:
            if len(self._flights) >= self.settings.delivery_queue:
                raise Busy("delivery is busy: too many derivations in progress")
            loop = asyncio.get_running_loop()
            flight = asyncio.ensure_future(loop.run_in_executor(
                self.pool, self._derive, target, fmt, key, etag))
            self._flights[key] = flight
            flight.add_done_callback(lambda _f: self._flights.pop(key, None))
            return await asyncio.shield(flight)
        shared = await asyncio.shield(flight)
        return Derived(shared.key, shared.size, shared.mime, shared.etag, False, shared.data)

    def _stored(self, key: str, fmt: str, etag: str) -> Derived | None:
        try:
            size = self.blobs.size(key)  # one call: its size, or that there is none
        except BlobNotFound:
            return None
        self.on_derive("stored")
        return Derived(key, size, {**FORMATS, **VIDEO_FORMATS}[fmt], etag, False, None)

    def _derive(self, target: Target, fmt: str, key: str, etag: str) -> Derived:
        found = self._stored(key, fmt, etag)
        if found is not None:
            return found
        lock, token = self.settings.keys.derive_lock(key), uuid.uuid4().hex
        deadline = time.monotonic() + LOCK_MS / 1000
        while self.redis is not None and not self.redis.set(lock, token, nx=True, px=LOCK_MS):
            time.sleep(0.05)  # another process computes it: wait for its result
            found = self._stored(key, fmt, etag)
            if found is not None:
                return found
            if time.monotonic() > deadline:
                raise Busy("delivery is busy: the derivative is being computed elsewhere")
        try:
            found = self._stored(key, fmt, etag)
            if found is not None:
                return found
            out = render(self.blobs.get(target.version.blobKey), target.chain, fmt,
                         self.settings.max_image_pixels)
            self.blobs.put(key, out.data)
            self.on_derive("computed")
            return Derived(key, len(out.data), out.mime, etag, True, out.data)
        finally:
            if self.redis is not None:
                self.redis.eval(_RELEASE, 1, lock, token)

    def warm(self, target: Target, fmt: str) -> None:
        """Compute ``target``'s derivative now, on the pool, for the first request to find
        (an upload's ``transformation.post``); a failure is the first request's to report."""
        key, etag = self.derivative_key(target, fmt)

        def run() -> None:
            try:
                self._derive(target, fmt, key, etag)
            except Exception:  # noqa: BLE001 - the request that asks for it reports it
                pass

        self.pool.submit(run)


def rel_after_account(raw_path: str, root_path: str = "") -> str:
    """The raw (still percent-encoded) path after ``/<account>/`` — what the SDK signed
    (``root_path``: the prefix an ingress serves the API under, if the path still has it)."""
    if root_path and raw_path.startswith(root_path):
        raw_path = raw_path[len(root_path):]
    return raw_path.lstrip("/").partition("/")[2]
