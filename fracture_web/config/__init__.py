"""The settings: every ``FRACTURE_*`` environment variable read once, by its kind, into one
:class:`Settings` object that the web app (``create_app``), the DICOM node, its workers and the
command lines all take (as microblog's ``Config``).

A malformed value stops start-up with a message naming the variable (``SettingsError``); a security
setting is never switched off by a word (:mod:`.kinds`). The table (:mod:`.table`) says each
setting's kind, default and readers; ``python -m fracture_web.config --markdown`` writes it as the
docs' settings table. This is the only module of the package that reads ``os.environ``. Imports
nothing from the package outside ``fracture_web.config``.
"""
from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from .table import (BY_NAME, CLI, DEFAULT_BACKEND, DEFAULT_TFLITE_FILE, NODE, PREFIX, PROJECT_ROOT, READERS, SETTINGS,
                    WEB, WORKER, Setting, SettingsError)

__all__ = ["BY_NAME", "CLI", "DEFAULT_BACKEND", "DEFAULT_TFLITE_FILE", "NODE", "PREFIX", "PROJECT_ROOT", "READERS",
           "SETTINGS", "WEB", "WORKER", "Setting", "Settings", "SettingsError", "check", "defaults", "for_command_line",
           "from_environ", "prometheus_multiproc_dir", "unknown"]


def environ(env: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """``env``, or the process's environment when None: the one place the package reads it."""
    return os.environ if env is None else env


def prometheus_multiproc_dir() -> str | None:
    """prometheus_client's own ``PROMETHEUS_MULTIPROC_DIR`` (set by gunicorn.conf.py before the workers
    fork), read when asked: the folder every process writes its metrics to, or None."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def defaults(reader: str | None = None) -> dict:
    """Fresh defaults of every setting (or only those ``reader`` reads)."""
    return {setting.name: setting.default for setting in SETTINGS if reader is None or reader in setting.readers}


def from_environ(env: Mapping[str, str], settings: Iterable[Setting] = SETTINGS) -> dict:
    """The settings whose variables are set in ``env``, each read by its kind; ``SettingsError``
    (naming the variable) for the first malformed one."""
    return {setting.name: setting.read(env[setting.variable]) for setting in settings if setting.variable in env}


def check(values: Mapping[str, Any], settings: Iterable[Setting] = SETTINGS) -> dict:
    """The table's settings among ``values`` (e.g. from an instance config.py), each read by its kind:
    text as from the environment, a value of the right type checked as it is."""
    return {setting.name: setting.read(values[setting.name]) for setting in settings if setting.name in values}


def unknown(env: Mapping[str, str]) -> list[str]:
    """``FRACTURE_*`` variables that name no setting of the table (a typo, e.g. FRACTURE_API_TOKN)."""
    return sorted(name for name in env if name.startswith(PREFIX) and name[len(PREFIX):] not in BY_NAME)


def for_command_line(parser: argparse.ArgumentParser, env: Mapping[str, str] | None = None) -> Settings:
    """The settings a command line takes its defaults from (its flags override them); a malformed
    one ends the command as a usage error naming the variable."""
    try:
        return Settings.from_environ(env)
    except SettingsError as err:
        parser.error(str(err))


class Settings(Mapping[str, Any]):
    """Every setting's value, by name (``settings["MODEL_DIR"]``): the environment's where its variable
    is set, else the default. Read once, at start-up, by :meth:`from_environ`."""

    def __init__(self, given: Mapping[str, Any] | None = None, unknown_variables: Iterable[str] = ()) -> None:
        self.given = dict(check(given or {}))  # the settings the environment set, typed
        self.unknown = tuple(unknown_variables)  # FRACTURE_* variables that name no setting

    @classmethod
    def from_environ(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings from ``env`` (the process's environment when None); ``SettingsError`` naming the
        first malformed variable."""
        env = environ(env)
        return cls(from_environ(env), unknown(env))

    def __getitem__(self, name: str) -> Any:
        return self.given[name] if name in self.given else BY_NAME[name].default

    def __iter__(self) -> Iterator[str]:
        return iter(BY_NAME)

    def __len__(self) -> int:
        return len(BY_NAME)

    def given_to(self, reader: str) -> dict:
        """The settings ``reader`` reads that the environment set (to lay over the reader's other sources)."""
        return {name: value for name, value in self.given.items() if reader in BY_NAME[name].readers}

    def warn_unknown(self, log: logging.Logger) -> None:
        """Name each ``FRACTURE_*`` variable that is no setting (a typo?) in ``log``; its value stays out."""
        for name in self.unknown:
            log.warning("%s is not a setting and is ignored (a typo?)", name)

    def __repr__(self) -> str:  # names only: values include passwords and tokens
        return f"Settings(given={sorted(self.given)})"
