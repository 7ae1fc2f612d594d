"""How a run is carried out: stages built from the config and fitted in order, checkpoints handed between them,
callbacks, the schedule scale, learning-rate schedules, sweeps that survive their jobs, and where run folders are.

Layer: below the command line (``longtail.run``), above methods, data and models, which it builds by
``_target_`` and never imports (methods import nothing from here). ``docs/architecture.md`` §3 tells how a stage
is built.
"""
