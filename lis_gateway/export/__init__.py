"""Exports of released results in formats other systems ask for (no sending here).

* :mod:`.xml4`: the social-insurance (BHYT) table 4 rows, pure;
* :mod:`.xml4_build`: those rows from the store's released results and the
  mapping tables, with every problem named.
"""
