"""The trainer service: fine-tuning jobs, a NATS work queue, workers, checkpoints, adapters; backends are plugins."""
