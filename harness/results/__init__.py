"""What every command writes and every report reads: `records` (the long-format record schema,
one frozen dataclass per kind), `reading` (the one reader of results files, and bounded reading
of the small JSON files beside them) and `environment` (what machine and software produced a
run). Nothing here measures.
"""
