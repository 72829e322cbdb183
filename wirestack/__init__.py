"""wirestack: see the network stack by breaking it.

A Python client fails; wirestack records the packets on the wire and lines up every frame of the traceback
with the packets the kernel produced below it. This module stays light: the probe imports it inside the
traced program, so the public names load on first use.
"""

from __future__ import annotations

from typing import Any

from ._version import __version__

__all__ = ["Alignment", "Call", "ExceptionInfo", "Frame", "Packet", "Report", "Trace", "Tracing", "align",
           "build_report", "render_text", "to_json", "trace", "__version__"]

_HOMES = {"Call": "model", "ExceptionInfo": "model", "Frame": "model", "Packet": "model", "Trace": "model",
          "Alignment": "core.pairing", "align": "core.pairing", "Report": "report", "build_report": "report",
          "to_json": "output.json", "render_text": "output.text", "trace": "api", "Tracing": "api"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module 'wirestack' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext wirestack` in IPython or Jupyter: the %%wire cell magic (see `wirestack.ipython`)."""
    from .ipython import load_ipython_extension as load

    load(ipython)
