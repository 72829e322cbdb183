"""File formats, bytes in and out: pcapng blocks, the capture reader, the trace archive embedded in a pcapng."""
