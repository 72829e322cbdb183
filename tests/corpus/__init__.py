"""The failure corpus: realistic failing programs (cases/), their local peers (peers.py), an independent
tshark-based witness of what was on the wire (witness.py), private network namespaces for resolver cases
(netns.py) and the catalog that ties each case to its truth about the wire (catalog.py)."""
