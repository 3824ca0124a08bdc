"""What every command writes and every report reads: `records` (the long-format record schema,
one frozen dataclass per kind, and the one reader of results files) and `environment` (what
machine and software produced a run). Nothing here measures.
"""
