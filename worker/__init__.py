"""Celery workers: the tasks behind every queue, and the providers they call."""
