"""assistant package of the Mangalm Sales Assistant."""
