"""fashionclf: a reproducible pipeline that sorts fashion product images into categories."""
from .core.memory import keep_freed_memory

__version__ = "0.1.0"

keep_freed_memory()  # every process that imports the package: stages, fold workers, init, predict
