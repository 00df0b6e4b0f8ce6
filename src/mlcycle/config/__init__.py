"""The configuration: typed schemas (``schema``) with their declared rules (``rules``), and
composing them with Hydra (``load``). Importing the package imports neither Hydra nor
OmegaConf; ``load`` does, inside its functions."""
