"""Alembic's script folder for the inference log (``env.py``, ``versions/``); run it through
``platform_assets.core.inference_log.migrate``, never with an ``alembic.ini``."""
