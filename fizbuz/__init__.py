"""fizbuz-serve: FizBuzNet from PyTorch to production.

The package holds what every serving path shares: the contract (names, keys,
artifact paths), the model and its training, the parity checks, the archive
check and the server lifecycle. The number <-> bits <-> label rules live in
the stdlib-only `fizbuz_codec` module at the project's root, because it ships
flat inside the .mar beside the handler.
"""
