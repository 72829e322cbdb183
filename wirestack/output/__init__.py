"""Renderers that return text or bytes (text, JSON, annotated pcapng, SVG, HTML), the sanitiser, atomic files."""
