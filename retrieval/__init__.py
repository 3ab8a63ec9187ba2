"""retrieval package of the Mangalm Sales Assistant."""
