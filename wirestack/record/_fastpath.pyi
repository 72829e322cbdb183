from collections.abc import Callable
from typing import Any

def wrap(kind: int, op: str, orig: Callable[..., Any], python: Callable[..., Any], failed: Callable[..., Any],
         slow: Callable[..., Any], probe: Any, sockets: dict[int, list[Any]], pending: list[Any],
         threads: dict[int, Any], tag_type: type, batch: int) -> Callable[..., Any]: ...
