"""Whether a message asks about several stores or one.

"Sharma General Store paisa?" asks what one store owes; "kaun kaun se store ka paisa baaki
hai" asks for the stores that owe. The intent classifier learns most of that from the
utterances, but a store's name is noise to it: with the name masked out, "Sharma General
Store paisa?" reads as a bare "paisa?", which could be either. The planner therefore settles
the question with the words below, read on the message without the store's name (so the
"Stores" of "Agarwal Stores" is not taken for several stores).
"""

from __future__ import annotations

import re

# What a store is called when several are meant ("kaun se dukaan", "which outlets").
_STORE_NOUN = (
    r"(?:stores?|shops?|dukaan\w*|dukan\w*|outlets?|accounts?|customers?|part(?:y|ies)|retailers?)"
)
# "kaun kaun se bills" and "kis kis invoice" ask about one store's bills, not several stores.
_NOT_STORES = r"(?!\s+(?:se\s+)?(?:bills?|invoices?|items?|products?|orders?|maal|payments? of)\b)"

# Asking which stores: "kis kis ka", "kaun se dukaan", "which stores", "defaulters".
WHICH_STORES = re.compile(
    rf"\b(?:"
    rf"(?:kaun\s*kaun|kis\s*kis){_NOT_STORES}"
    rf"|(?:kaun\s*se|kaunse|kaunsi|kaunsa|konse|konsi|which|all|sab|sabhi)\s+(?:\w+\s+)?{_STORE_NOUN}"
    r"|kiska|kiske|kiski|kinka|kinke|kinki|kin|kinhe|kinko|kisne|who|whose|whom|defaulters?"
    r"|(?:store|shop|party|region|city|area)\s*-?\s*wise|storewise"
    r")\b",
    re.IGNORECASE,
)
# Stores in the plural. A store's own name can hold one too ("Agarwal Stores"), so this is
# read only on the message without the name it names.
PLURAL_STORES = re.compile(
    r"\b(?:stores|shops|dukane|dukano|dukanon|dukaane|dukaano|dukaanon|outlets|accounts"
    r"|customers|parties|retailers)\b",
    re.IGNORECASE,
)
# Asking for a list outright, without saying of what ("dues list", "ageing report").
LIST_REQUEST = re.compile(
    r"\b(?:list|lists|ageing|aging|receivables|sabse\s+(?:zyada|jyada|bade)|top\s+\d+)\b",
    re.IGNORECASE,
)


def about_several_stores(text: str) -> bool:
    """Whether `text`, read without the name of the store it names, is about several stores:
    it asks which ones ("kis kis ka", "which stores", "defaulters") or speaks of stores in the
    plural."""
    return WHICH_STORES.search(text) is not None or PLURAL_STORES.search(text) is not None


def asks_for_store_list(text: str) -> bool:
    """Whether `text` asks outright for a list of stores: which ones ("kaun kaun", "who"), or
    a list or report ("dues list", "ageing report"). A plural alone does not count: "how much
    does Anand Stores owe" names a store, found or not."""
    return WHICH_STORES.search(text) is not None or LIST_REQUEST.search(text) is not None
