"""
The greeter plugin, version 2: also says goodbye.
"""

from .phrases import FAREWELL, GREETING


class Greeter:
    def handle(self, text: str) -> str:
        return f"{GREETING}, {text}. {FAREWELL}!"


plugin = Greeter()
