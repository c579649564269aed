"""The sender for the configured destination: STOW-RS when a DICOMweb URL is set, else C-STORE."""
from __future__ import annotations

from .config import NodeConfig
from .sender import CStoreSender, Sender
from .stow import StowSender


def sender_for(config: NodeConfig) -> Sender:
    """STOW-RS when a DICOMweb URL is set, else C-STORE."""
    return StowSender(config) if config.dicomweb else CStoreSender(config)

