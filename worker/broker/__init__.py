"""dramatiq: the broker, durable retries, the actors, the intake stream, the model
keeper, the submitting client and the doctor (stuck work)."""
