"""forecasting package of the Mangalm Sales Assistant."""
