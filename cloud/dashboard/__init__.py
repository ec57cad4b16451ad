"""The dashboard page (static package data: index.html, app.js, style.css)."""

__all__: list[str] = []
