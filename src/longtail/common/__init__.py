"""What every layer shares: the self-describing checkpoint format and its safe writing, the few facts about
distributed (DDP) runs, and every private API of a dependency (``compat``). Imports nothing else of longtail.
"""
