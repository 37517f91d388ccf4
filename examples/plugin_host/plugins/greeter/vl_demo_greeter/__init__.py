"""
The greeter plugin: one object with a ``handle(text)`` method, as the host expects.
"""

from .phrases import GREETING


class Greeter:
    def handle(self, text: str) -> str:
        return f"{GREETING}, {text}"


plugin = Greeter()
