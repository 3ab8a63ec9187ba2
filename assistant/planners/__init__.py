"""Planners: turn a message into tool calls (offline NLU, LLM tool calling)."""
