"""prompts package of the Mangalm Sales Assistant."""
