"""The IO edge of a run: capture backends, the probe inside the traced interpreter, tracefs, the runner, the Trace."""
