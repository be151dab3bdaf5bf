"""Training backends. Built-ins (`trl`, `peft`) are registered through the `tunery.trainer_backends` entry points,
exactly as a third-party package would register its own."""
