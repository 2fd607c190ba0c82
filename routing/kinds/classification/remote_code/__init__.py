"""The configuration and modeling code that exported compositions ship for `trust_remote_code`.

These two modules import only torch and transformers: the export copies them
into every model repository, where transformers loads them on their own.
"""
