"""Offline language understanding: periods, quantities, intents, entities."""
