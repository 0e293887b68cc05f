"""The pretrained zoo, installed as the package ``mbrnn.zoo``: one folder per model.

Each ``<name>/`` holds ``config.json``, ``model.safetensors``, ``README.md`` (the model
card) and, for language models, ``tokenizer.json``. The files are package data, found
through :mod:`importlib.resources` by :mod:`mbrnn.hub`; this module holds no code.
"""
