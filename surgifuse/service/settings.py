"""Service settings: one pydantic-settings class, read from ``SURGIFUSE_*`` environment variables
and overridden by ``surgifuse serve`` options; and the ``PUT /v1/settings`` response."""

from __future__ import annotations

import ipaddress

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from surgifuse.errors import InputError
from surgifuse.live.settings import LiveSettings

LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class ServiceSettings(BaseSettings, LiveSettings):
    """Everything ``surgifuse serve`` can be told; each field also reads ``SURGIFUSE_<NAME>``
    (``SURGIFUSE_ENGINE_OPTIONS`` as JSON). The processing fields are ``LiveSettings``'.

    Security: the service binds 127.0.0.1. Bound to another address it requires ``token`` on the
    websocket, the upload and the settings, and refuses to start without one unless ``insecure``.
    """

    model_config = SettingsConfigDict(env_prefix="SURGIFUSE_", extra="ignore")

    # network and security
    host: str = Field("127.0.0.1", description="address to bind (others than loopback need SURGIFUSE_TOKEN)")
    port: int = Field(8000, ge=0, le=65535, description="port to listen on")
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
    demo_eye_motion: bool = Field(True, description="Demo: the eye wanders slowly and the optics breathe (0.5 %), "
                                                    "as a real eye and microscope do")

    # processing: the fields of surgifuse.live.settings.LiveSettings (also changeable at run time
    # through /v1/settings), inherited

    # upload
    upload_max_files: int = Field(64, ge=1, le=1024, description="Images per upload")
    upload_max_pixels: int = Field(40_000_000, ge=1, description="Per image (width x height)")
    upload_max_bytes: int = Field(512 * 1024 * 1024, ge=1, description="Whole request body")
    upload_workers: int = Field(1, ge=1, le=16, description="Uploads fused at the same time")
    upload_queue: int = Field(2, ge=0, le=64, description="Uploads that may wait for a worker before 503")

    def token_value(self) -> str | None:
        return self.token.get_secret_value() if self.token is not None else None

    def check_security(self) -> None:
        """Raise ``InputError`` when bound beyond loopback with no token and not ``insecure``."""
        if not is_loopback(self.host) and not self.token_value() and not self.insecure:
            raise InputError(f"refusing to listen on {self.host} without a token: set SURGIFUSE_TOKEN "
                             "(clients then send it), or pass --insecure to allow anyone on the network",
                             field="host")

    def live(self) -> LiveSettings:
        """The live-pipeline part of these settings."""
        return LiveSettings(**self.model_dump(include=set(LiveSettings.model_fields)))


class SettingsResponse(LiveSettings):
    """``PUT /v1/settings`` body: the settings now in use, the engine options an engine switch
    dropped (name: why) and warnings for the operator (the page shows them), e.g. an engine too slow
    for the live budget on this machine."""

    dropped_options: dict[str, str] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
