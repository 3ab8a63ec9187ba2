"""channels package of the Mangalm Sales Assistant."""
