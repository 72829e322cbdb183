"""The pure core, no IO: decoding frames, flows, pairing packets with calls and frames, kernel events,
admission, merging two captures."""
