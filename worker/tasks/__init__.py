"""Celery tasks, one module per queue/area; each task receives a job id."""
