"""Configuration files: TOML loading with errors that name the file and what is wrong.
(The role configs and their validation build on this.)"""

from __future__ import annotations

import os
import sys

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the project needs 3.11, kept for tools that import it on older Pythons
    import tomli as tomllib


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the file, key and reason."""


def load_toml(path: str | os.PathLike) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {os.fspath(path)} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {os.fspath(path)} is a directory") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {os.fspath(path)} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {os.fspath(path)} is not UTF-8: {exc}") from None
