"""Celery task modules: thin glue around :mod:`worker.execution`."""
