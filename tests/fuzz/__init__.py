"""The fuzzing harness for everything that reads untrusted input: `wirestack read` over mutated wirestack
pcapngs, hostile archive documents, zlib bombs, damaged timestamps and hostile payloads (see README.md here)."""
