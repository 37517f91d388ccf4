"""
The word count plugin.
"""


class WordCount:
    def handle(self, text: str) -> str:
        return f"{len(text.split())} word(s)"


plugin = WordCount()
