"""Service settings: one pydantic-settings class, read from ``SURGIFUSE_*`` environment variables
and overridden by ``surgifuse serve`` options; and the run-time settings body of ``/v1/settings``."""

from __future__ import annotations

import ipaddress

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from surgifuse.errors import InputError

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ServiceSettings(BaseSettings):
    """Everything ``surgifuse serve`` can be told; each field also reads ``SURGIFUSE_<NAME>``.

    Security: the service binds 127.0.0.1. Bound to another address it requires ``token`` on the
    websocket, the upload and the settings, and refuses to start without one unless ``insecure``.
    """

    model_config = SettingsConfigDict(env_prefix="SURGIFUSE_", extra="ignore")

    # network and security
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    token: SecretStr | None = Field(None, description="Shared secret for stream, upload and settings")
    insecure: bool = Field(False, description="Allow a non-loopback bind without a token")

    # source
    source: str = Field("demo", description="demo | camera:INDEX | file:PATH | URL | gst:PIPELINE")
    # 640x480 by default: on the 2-core reference machine the classical engine fuses K=5 frames of
    # this size well inside one frame interval (1280x720 takes about 45 ms, over the 33 ms budget,
    # so every frame would be published raw by the fail-safe). Larger: --width/--height (+ --budget-ms).
    width: int = Field(640, ge=16, le=8192, description="Demo source frame width")
    height: int = Field(480, ge=16, le=8192, description="Demo source frame height")
    fps: float = Field(30.0, gt=0, le=240, description="Demo source frame rate")
    demo_cache_frames: int | None = Field(None, ge=0, le=1000,
                                          description="Demo: render this many frames once and loop them (0 = render "
                                                      "live; unset = one seamless 120-frame loop when it fits in 256 MB)")
    loop: bool = Field(True, description="Loop a file source at its end")

    # processing (also changeable at run time through /v1/settings)
    engine: str = "classical"
    k: int = Field(5, ge=1, le=64)
    threshold: int | None = Field(None, ge=0, le=65535, description="Focus-measure threshold T (None: engine default)")
    align: bool = True
    motion_guard: bool = True
    motion_threshold: float = Field(16.0, ge=0, le=255)
    budget_ms: float | None = Field(None, gt=0, le=10000, description="Fusion budget (None: one frame interval)")
    jpeg_quality: int = Field(80, ge=1, le=100)

    # upload
    upload_max_files: int = Field(64, ge=1, le=1024)
    upload_max_pixels: int = Field(40_000_000, ge=1, description="Per image (width x height)")
    upload_max_bytes: int = Field(512 * 1024 * 1024, ge=1, description="Whole request body")
    upload_workers: int = Field(1, ge=1, le=16)
    upload_queue: int = Field(2, ge=0, le=64, description="Uploads that may wait for a worker before 503")

    def token_value(self) -> str | None:
        return self.token.get_secret_value() if self.token is not None else None

    def check_security(self) -> None:
        """Raise ``ValueError`` when bound beyond loopback with no token and not ``insecure``."""
        if not is_loopback(self.host) and not self.token_value() and not self.insecure:
            raise InputError(f"refusing to listen on {self.host} without a token: set SURGIFUSE_TOKEN "
                             "(clients then send it), or pass --insecure to allow anyone on the network")


class RuntimeSettings(BaseModel):
    """``GET /v1/settings`` body: what the running pipeline uses now."""

    engine: str
    k: int
    threshold: int | None
    jpeg_quality: int
    align: bool
    motion_guard: bool
    motion_threshold: float
    budget_ms: float | None


class RuntimeSettingsUpdate(BaseModel):
    """``PUT /v1/settings`` body: any subset of the fields; others keep their value."""

    model_config = ConfigDict(extra="forbid")

    engine: str | None = Field(None, description="Engine name (see /v1/engines)")
    k: int | None = Field(None, ge=1, le=64, description="Frames in the rolling focal stack")
    threshold: int | None = Field(None, ge=0, le=65535, description="Focus-measure threshold T")
    jpeg_quality: int | None = Field(None, ge=1, le=100)
    align: bool | None = None
    motion_guard: bool | None = None
    motion_threshold: float | None = Field(None, ge=0, le=255)
    budget_ms: float | None = Field(None, gt=0, le=10000)

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, value: str | None) -> str | None:
        from surgifuse.engines import engine_names

        if value is not None and value not in engine_names():
            raise InputError(f"unknown engine {value!r}; choose one of {', '.join(engine_names())}")
        return value
