"""Running work in processes of its own, durably.

`worker` is the one protocol between a parent and any worker process (a run's case, a timing
worker, a study seed): how it is launched (its own process group, dying with its parent: see
`parent_death`), how it takes its job and writes its records, what its exit code means, what of
its stderr is kept. `case` (what a run's case is), `process` (one case in its own process),
`runner` (the durable, resumable result stream of a run), `session` (a run folder: checks, lock,
signals), `progress` (the display), `availability` (which frameworks can be had here),
`ray_executor` (cases as Ray tasks; the only module that imports Ray). Nothing here imports a
framework: it runs beside the work being measured.
"""
