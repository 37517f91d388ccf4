"""
The word count plugin, version 2, with a bug: it returns a number, not a string.
"""


class WordCount:
    def handle(self, text: str) -> int:
        return len(text.split())


plugin = WordCount()
