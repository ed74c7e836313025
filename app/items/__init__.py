"""The example resource, `/api/items`: copy this folder to add your own (README)."""

from app.items.views import bp

__all__ = ["bp"]
