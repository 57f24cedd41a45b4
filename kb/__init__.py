"""The Edge DL knowledge base: the survey's taxonomy of techniques and systems as sourced data.

>>> from kb import KnowledgeBase
>>> kb = KnowledgeBase.open()    # doctest: +SKIP
"""

from kb.api import Comparison, KnowledgeBase, SearchHit
from kb.errors import DataError, KBError, UnknownIdError
from kb.schema import Entry

__all__ = [
    "KnowledgeBase",
    "SearchHit",
    "Comparison",
    "Entry",
    "KBError",
    "DataError",
    "UnknownIdError",
]
