"""The lab catalogue: scenarios, their loopback peers, progress lines, and the network labs of namespaces."""
