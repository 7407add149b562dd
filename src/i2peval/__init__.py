"""i2peval: inappropriate-image evaluation on I2P with inference-time mitigations.

The study path, one module each: `prompts` -> `models` -> `generate` -> `classify`
-> `aggregate` -> `report`. Every stage is a plain function that the Snakemake rule
scripts in ``scripts/`` call; nothing here needs Snakemake.
"""

__version__ = "0.1.0"
