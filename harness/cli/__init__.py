"""The command line: a thin layer over the library. `main` (the parser and the exit codes),
`options` (checks of command-line values), one module per command family. Each command turns
its arguments into a request once, here, and passes it down.
"""
