"""The composed config, before anything runs: command-line overrides checked against the config tree (unknown
keys, renamed keys, wrong types) and the composed config validated (interacting keys, stage lists, data needs).

Nothing here imports torch; ``conf/`` (the Hydra tree) is the package folder beside this one.
"""
