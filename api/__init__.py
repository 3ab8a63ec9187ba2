"""api package of the Mangalm Sales Assistant."""
