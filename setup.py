"""The optional C short path of the probe (wirestack/record/_fastpath.c). Optional: without a compiler and Python's
headers the build only warns, and the probe runs in pure Python (the same records, at a higher cost per call)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("wirestack.record._fastpath", ["wirestack/record/_fastpath.c"], optional=True)])
