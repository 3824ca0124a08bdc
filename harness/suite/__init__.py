"""What `run` asks and measures: `questions` (the timing and graph questions), `suites` (which
questions, variants, modes and budgets each suite covers), `planning` (a suite turned into
cases), `answers` (the questions answered from a timing case's records).
"""
