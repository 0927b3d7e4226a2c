"""From a composed Hydra config to library objects, shared by the apps in ``cli/``: config
validation, the network's keyword arguments, the victim key's source and the DataModule.

``cli/*`` only parses, composes and reports; everything an app decides lives here, so that
tests, notebooks and sweeps call the same code as the console scripts.
"""
