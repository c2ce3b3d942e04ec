"""asterisk-agent: an on-premise AI phone agent for medical practices."""

__version__ = "0.1.0"
