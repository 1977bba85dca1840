"""Runtime configuration: one pydantic settings class, read from ``EXTWORKER_*``.

Build it once at the entry point (the CLI or the worker module dramatiq
imports) and pass it down; nothing else in the package reads the environment.

Nested values use ``__`` (``EXTWORKER_UNIT_COSTS__REMOVE_BG=100`` is not
supported because the keys contain dashes; give the whole mapping as JSON:
``EXTWORKER_UNIT_COSTS='{"remove-bg": 100}'`` — it is merged over the defaults).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.core.keys import Keys
from worker.core.urls import Urls

DEFAULT_UNIT_COSTS: dict[str, int] = {
    # From the hosted extensions reference.
    "remove-bg": 130,
    "google-auto-tagging": 2,
    "aws-auto-tagging": 1,
    # Our choices (see README "Extension units").
    "ai-auto-description": 8,
    "ai-tasks": 4,  # per task in the extension
}


class Settings(BaseSettings):
    """Every knob of a worker or CLI process. Field names map to ``EXTWORKER_<NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="EXTWORKER_", env_nested_delimiter="__", extra="ignore"
    )

    redis_url: str = Field(
        "redis://127.0.0.1:6379/0", description="Redis for the broker, records, units and jobs."
    )
    broker_url: str | None = Field(
        None, description="A Redis of the broker's own (another database or server): its queues "
        "alone, so dramatiq's maintenance (a `KEYS` over the whole database) stays cheap; "
        "default: `REDIS_URL`.")
    store_url: str | None = Field(
        None, description="Where records, jobs, units, saved extensions and fields live: "
        "`postgresql://…` (the `pg` extra; recommended past ~1 M files), `redis://…` (another "
        "Redis than the broker's), `sqlite:///<dir>` (a single node); default: the broker's "
        "Redis (`REDIS_URL`). Queues, claims, leases, sessions and webhooks stay in Redis.")
    redis_outage_wait_s: float = Field(
        30.0, ge=0, description="How long a worker waits for Redis to come back (a restart, a "
        "failover) before it hands the message to dramatiq's retries."
    )
    data_dir: Path = Field(
        Path(".data"), description="Blobs (local storage) and the embedded stores of `apply`."
    )
    models_dir: Path = Field(
        Path(".data/models"), description="Where `models pull` puts models; loaded offline."
    )
    blob_url: str | None = Field(
        None,
        description="fsspec URL of blob storage (default: `DATA_DIR/blobs` on local disk).",
    )
    public_url_base: str | None = Field(
        None, description="A CDN in front of the blob store's root: a public, published "
        "file's `url` is this base + its current version's blob key."
    )
    namespace: str = Field("extworker", description="Prefix of every Redis key we own.")
    api_url: str = Field(
        "http://127.0.0.1:8080", description="The HTTP API's address as clients reach it: file "
        "`url`s and `thumbnail`s are built on it (workers put them in webhooks too).")
    url_endpoint: str | None = Field(
        None, description="Each account's URL endpoint, `{account}` standing for its id "
        "(default: `API_URL/{account}`, served by `extworker api`). SDKs' `url_endpoint`.")
    delivery_threads: int = Field(
        2, ge=1, le=64, description="Derivatives (thumbnails, transformations) computed at once "
        "per API process; the rest of the API never waits for them.")
    delivery_queue: int = Field(
        64, ge=1, description="Derivations in progress or waiting per API process, at most: "
        "beyond, 503 with Retry-After (delivery cannot pile up work it will never finish).")
    delivery_max_age_s: int = Field(
        60, ge=0, description="Cache-Control max-age of a file's plain URL (its bytes change "
        "with a new version); versioned URLs (`?updatedAt=`) are immutable for a year.")

    queue_default: str = Field("default", description="Queue of the dispatch actor.")
    queue_extensions: str = Field(
        "extensions", description="Queue of model work (what GPU nodes consume)."
    )
    queue_webhooks: str = Field("webhooks", description="Queue of webhook deliveries.")

    unit_costs: dict[str, int] = Field(
        default_factory=dict, description="Unit cost per extension (JSON), merged over defaults."
    )
    default_quota: int | None = Field(
        None, description="Monthly unit quota for every account without its own (none: no limit)."
    )
    quotas: dict[str, int] = Field(
        default_factory=dict, description='Per-account monthly quotas, JSON: `{"acme": 50000}`.'
    )

    device: str = Field("cpu", description="`auto`, `cpu` or `cuda[:N]` for model inference.")
    inference_threads: int = Field(
        0, ge=0, description="CPU threads per process for inference (ONNX Runtime intra-op, "
        "torch). 0: the CPUs this container may use (affinity, cgroup quota) divided by "
        "`serve`'s processes."
    )
    remove_bg_model: str = Field("u2netp", description="Default remove-bg model.")
    remove_bg_type_models: dict[str, str] = Field(
        default_factory=dict, description="remove-bg's `type` option as a model hint: "
        'a model per type, e.g. `{"person": "u2net_human_seg"}` (a job\'s own `model` wins).'
    )
    tagger_google: Literal["imagenet", "classifier", "zero-shot"] = Field(
        "imagenet", description="Local tagger behind `google-auto-tagging`: `imagenet` (the "
        "trained EfficientNet-Lite0, tags through WordNet: the CPU default), `classifier` (a "
        "transformers image classifier) or `zero-shot` (a CLIP-style model over the tag "
        "vocabulary)."
    )
    tagger_aws: Literal["imagenet", "classifier", "zero-shot"] = Field(
        "imagenet", description="Local tagger behind `aws-auto-tagging` (as above)."
    )
    imagenet_model: str = Field(
        "efficientnet-lite0", description="The `imagenet` tagger's model (`extworker models "
        "pull efficientnet-lite0`)."
    )
    classifier_model: str = Field(
        "vit-base-imagenet", description="Image classifier (a name in MODELS_DIR/hf)."
    )
    zero_shot_model: str = Field(
        "siglip-base", description="CLIP-style zero-shot model (a name in MODELS_DIR/hf)."
    )
    tag_vocabulary_file: Path | None = Field(
        None, description="Labels for zero-shot tagging, one per line (default: shipped list)."
    )
    caption_model: str = Field(
        "blip-caption-base", description="Image-to-text model for `ai-auto-description`."
    )
    caption_max_tokens: int = Field(40, ge=1, le=200, description="Longest caption, in tokens.")
    task_engine: Literal["zero-shot"] = Field(
        "zero-shot", description="How ai-tasks score options (CLIP-style model)."
    )
    task_model: str | None = Field(
        None, description="Model of the task engine (default: EXTWORKER_ZERO_SHOT_MODEL)."
    )
    task_threshold: float = Field(
        0.5, ge=0, le=1, description="ai-tasks: options scoring at least this are chosen."
    )
    task_yes_no_margin: float = Field(
        0.1, ge=0, le=1, description="ai-tasks yes_no: lead one answer needs over the other."
    )
    fp16: bool = Field(True, description="Half precision for torch models on CUDA.")
    shared_models: Literal["auto", "on", "off"] = Field(
        "auto", description="`serve`: one inference process holds each model once for all "
        "worker processes of the node (`auto`: when a GPU is visible).")
    inference_address: str | None = Field(
        None, description="Set by `serve` for its workers: the inference process's socket.")
    inference_key: str | None = Field(
        None, description="Set by `serve` for its workers: the inference socket's key (hex).")
    inference_timeout_s: float = Field(
        300.0, gt=0, description="Longest wait for the inference process to answer one call.")
    batch_max_size: int = Field(
        16, ge=1, le=256, description="Micro-batching: concurrent runs of one model in a "
        "process (remove-bg, classifier, zero-shot tagger, ai-tasks scoring, captioner) "
        "share one forward pass of up to this many images; 1 turns it off.")
    batch_max_wait_ms: float = Field(
        2.0, ge=0, le=100, description="How long the first run of a batch waits for company "
        "(only while other runs are arriving; a lone run waits this long at most).")
    model_idle_ttl_s: float | None = Field(
        1800, description="Unload a model unused this long (none: never)."
    )
    preload: list[str] = Field(
        default_factory=list,
        description='Models to load at worker boot, JSON: `["remove-bg:u2netp"]` — '
        "`<kind>:<name>`, kinds remove-bg, classifier, zero-shot, captioner.",
    )
    extra_extensions: list[str] = Field(
        default_factory=list, description='More handlers by import path, JSON: '
        '`["my_pkg.ext:MyExtension"]` (besides the `extworker.extensions` entry points).'
    )
    png_compress_level: int = Field(
        2, ge=0, le=9, description="Deflate level of PNG outputs (zlib-ng; 1: fastest, "
        "2: about 30 % smaller than 1 for 1.5x its time, 9: smallest)."
    )
    max_image_pixels: int = Field(
        50_000_000, description="Images above this many pixels fail (decompression-bomb guard)."
    )
    egress_allowlist: str | None = Field(
        None, description="Comma-separated CIDRs and hostnames outbound requests may reach "
        "even though they are not public (tests, private deployments)."
    )
    egress_https_only: bool = Field(False, description="Refuse plain-http outbound URLs.")
    fetch_timeout_s: float = Field(8.0, description="Header timeout of remote fetches.")
    fetch_max_bytes: int = Field(25 * 1024 * 1024, description="Size cap of remote fetches.")
    fetch_deadline_s: float = Field(
        30.0, gt=0, description="Whole-exchange limit of a remote fetch (connect, headers, "
        "body): a server that trickles bytes is cut off here."
    )
    upload_max_bytes: int = Field(
        25 * 1024 * 1024, gt=0, description="Largest file an upload may carry (any source)."
    )
    video_keyframes: int = Field(
        4, ge=1, le=32, description="Keyframes auto-tagging and ai-auto-description look at "
        "in a video, spread over its duration (tags merged: each at its best frame's score).")
    video_max_bytes: int = Field(
        300 * 1024 * 1024, gt=0, description="Largest video (mp4, webm, mov) an upload may "
        "carry: the upload document's 300 MB; other files keep EXTWORKER_UPLOAD_MAX_BYTES.")
    api_sync_wait_s: float = Field(
        3.0, ge=0, le=60, description="The hosted API's synchronous attempt: an HTTP API "
        "upload or update with auto-tagging waits up to this long for it; done in time, it is "
        "answered in the response with its AITags (and gets no webhook). Every other "
        "extension is answered `pending` and reported by webhook. 0: never wait. The default "
        "is about twice the p99 of a tagging's end on a 2-core CPU node (ViT-B/16, 1.4 s: "
        "benchmarks/sync_wait.py).")
    api_max_body_bytes: int = Field(
        26 * 1024 * 1024, description="Largest HTTP API request body (413 above it).")
    upload_base64_max_bytes: int = Field(
        1024 * 1024, gt=0, description="Largest file an upload may carry inline as `base64` "
        "(it travels through Redis: use blobKey or url for more)."
    )
    embedded_metadata: bool = Field(
        True, description="Read EXIF/IPTC/XMP into `embeddedMetadata` when a version is stored."
    )
    exiftool: str = Field("exiftool", description="The ExifTool executable.")
    max_versions: int = Field(100, description="Versions kept per file; beyond, writes fail.")
    extension_time_limit_s: int = Field(
        600, ge=1, description="Longest one extension may run; beyond, it fails (`timeout`)."
    )
    extension_max_retries: int = Field(
        10, ge=0, description="Retries of an extension on infrastructure errors; then it fails "
        "(`internal_error`)."
    )
    retry_min_backoff_s: float = Field(15.0, gt=0, description="First retry's delay.")
    retry_max_backoff_s: float = Field(
        300.0, gt=0, description="Longest delay between retries (doubling up to it): all "
        "retries end within about an hour, far inside the job TTL."
    )
    processes: int = Field(1, ge=1, description="`serve` worker processes (never the core count).")
    threads: int = Field(2, ge=1, description="`serve` threads per process.")
    secret_key: str | None = Field(
        None, description="Encrypts webhook secrets at rest: comma-separated keys, newest first "
        "(Fernet keys, or passphrases stretched with scrypt and a salt); older keys decrypt and "
        "are re-encrypted with the first on read."
    )
    webhook_delays_s: list[int] = Field(
        default_factory=lambda: [0, 5, 300, 1800, 7200, 18000, 36000, 23095],
        description="Delay before each attempt after the previous one (JSON list; ±20 % jitter).",
    )
    webhook_timeout_s: float = Field(30.0, description="Whole-exchange limit of one attempt.")
    webhook_lease_s: float = Field(
        90.0, ge=3.0, description="A claimed attempt is retried by another worker after this "
        "(at least 3 s and longer than the timeout; a live worker renews it every third of it "
        "while its batch runs, so only a crash or a freeze of two thirds of it lets another "
        "worker send the same webhook again)."
    )
    webhook_secret_grace_s: int = Field(
        86400, description="After a rotation, also sign with the previous secret this long."
    )
    webhook_legacy_signature: bool = Field(
        False, description="Also send `x-ik-signature: t=<ms>,v1=<hex>`."
    )
    webhook_batch: int = Field(100, description="Deliveries claimed per `deliver_due` message.")
    webhook_poll_s: float = Field(1.0, description="How often webhook workers look for due ones.")
    webhook_log_max: int = Field(10_000, description="Deliveries kept in the log, at most.")
    webhook_log_ttl_s: int = Field(
        30 * 24 * 3600, description="Final deliveries are kept this long after their last attempt."
    )
    http_host: str = Field("0.0.0.0", description="Bind address of the metrics/health port.")
    http_port: int = Field(9191, description="`/metrics`, `/healthz`, `/readyz` (0: off).")
    shutdown_timeout_s: float = Field(
        30, description="On SIGTERM, how long in-flight messages may finish before the "
        "process exits (unfinished ones are redelivered)."
    )
    broker_heartbeat_timeout_s: float = Field(
        60, description="A worker silent this long is dead: its unacked messages are requeued."
    )
    broker_maintenance_chance: int = Field(
        1000, ge=0, le=1_000_000,
        description="Broker fetches per million that also requeue dead workers' messages.",
    )
    broker_sweep_s: float = Field(
        10, ge=0, description="Every this many seconds each worker process puts dead workers' "
        "unacked messages back in its queues (dramatiq's own maintenance, on a timer; 0: off). "
        "A crashed worker's job restarts within the heartbeat timeout plus this.",
    )
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="`auto`: console on a terminal, JSON otherwise."
    )
    require_persistent_redis: bool = Field(
        False, description="`/readyz` answers 503 while Redis has neither AOF nor save points "
        "(everything extworker holds is in Redis: a restart without persistence loses it).")
    blob_orphan_grace_s: int = Field(
        24 * 3600, ge=60, description="`extworker doctor` reports blobs extworker wrote that no "
        "file record references once they are this old (younger ones may be work in "
        "flight); `--fix` removes them.")
    job_ttl_s: int = Field(7 * 24 * 3600, description="How long job documents are kept.")
    intake_stream: str = Field("intake", description="Stream (under the namespace) for jobs.")
    intake_maxlen: int = Field(
        100_000, description="Unread jobs the intake stream holds at most: publishing beyond "
        "is refused (the stream is never trimmed)."
    )

    @field_validator("device")
    @classmethod
    def _check_device(cls, v: str) -> str:
        if v in ("auto", "cpu") or v == "cuda" or (v.startswith("cuda:") and v[5:].isdigit()):
            return v
        raise ValueError("device must be auto, cpu, cuda or cuda:N")

    @model_validator(mode="after")
    def _lease_outlives_timeout(self) -> Settings:
        if self.webhook_lease_s <= self.webhook_timeout_s:
            raise ValueError("webhook_lease_s must be longer than webhook_timeout_s")
        return self

    def unit_cost(self, extension: str) -> int:
        """Units charged for one successful run of ``extension`` (per task for ai-tasks)."""
        return {**DEFAULT_UNIT_COSTS, **self.unit_costs}.get(extension, 0)

    def quota_for(self, account: str) -> int | None:
        """The monthly unit quota of ``account``, or ``None`` for unlimited."""
        return self.quotas.get(account, self.default_quota)

    @property
    def keys(self) -> Keys:
        """Every Redis key, under ``namespace`` (``worker.core.keys``)."""
        return Keys(self.namespace, self.intake_stream)

    @property
    def urls(self) -> Urls:
        """Where clients fetch files (``worker.core.urls``)."""
        return Urls(self.api_url, self.url_endpoint, self.public_url_base)

    @property
    def blob_root(self) -> str:
        """fsspec URL of blob storage."""
        return self.blob_url or f"file://{(self.data_dir / 'blobs').resolve()}"
