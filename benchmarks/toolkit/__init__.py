"""The benchmarks' shared toolkit, one module per concept (import from the module):

- ``results``: the JSON writer of every benchmark (strict, atomic) and the one-line error text a result records;
- ``timing``: wall time of consecutive phases (``Laps``, device synchronised), methods interleaved turn by turn,
  quantiles; ``litesam_pl.inference.timing``'s ``sync`` and ``ModuleTimer`` re-exported;
- ``paper``: the Lite-SAM paper's figures, one dict per table;
- SegEvery's options as flags: ``litesam_pl.inference.segevery_options.add_option_flags(parser, names, defaults=, flags=)``.
"""
