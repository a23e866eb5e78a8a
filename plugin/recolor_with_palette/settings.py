"""The plug-in's settings, stored by the editor (Krita: writeSetting/readSetting).

Stores hand out and take strings, so every value is parsed here, and a value that does not
parse (an old version's, a hand edit) falls back to its default instead of breaking the
docker.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from .client import METHODS, Connection
from .palettes import DEFAULT_COLORS, MAX_COLORS, MIN_COLORS
from .wire import DEFAULT_ADDRESS

GROUP = "RecolorWithPalette"


@dataclass
class Settings:
    address: str = DEFAULT_ADDRESS
    timeout_s: float = 300.0  # one recolour request
    start_timeout_s: float = 90.0  # waiting for a daemon the plug-in started
    auto_start: bool = True  # start the installed backend when nothing answers locally
    palette_size: int = DEFAULT_COLORS  # colours taken from the layer
    method: str = "palettenet"
    server_public_key_file: str = ""  # CurveZMQ, for a daemon on another machine
    client_secret_key_file: str = ""

    def connection(self) -> Connection:
        return Connection(
            address=self.address.strip(),
            timeout_s=self.timeout_s,
            # Key files: transport reads them; a path given as str would be taken for a key.
            server_public_key=_path(self.server_public_key_file),
            client_keys=_path(self.client_secret_key_file),
        )

    @classmethod
    def load(cls, read) -> Settings:
        """read(key, default_text) -> text, e.g. Krita's readSetting bound to GROUP."""
        settings = cls()
        for field in fields(cls):
            default = getattr(settings, field.name)
            text = read(field.name, _text(default))
            try:
                value = _parse(text, type(default))
            except ValueError:
                continue
            setattr(settings, field.name, value)
        settings.palette_size = min(MAX_COLORS, max(MIN_COLORS, settings.palette_size))
        if settings.method not in METHODS:
            settings.method = "palettenet"
        return settings

    def save(self, write) -> None:
        """write(key, text), e.g. Krita's writeSetting bound to GROUP."""
        for field in fields(self):
            write(field.name, _text(getattr(self, field.name)))


def _path(text: str) -> Path | None:
    return Path(text) if text.strip() else None


def _text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _parse(text, kind):
    text = str(text).strip()
    if kind is bool:
        if text.lower() not in ("true", "false"):
            raise ValueError(text)
        return text.lower() == "true"
    if kind is str:
        return text
    value = kind(text)
    if kind is float and not value > 0:
        raise ValueError(text)
    return value
