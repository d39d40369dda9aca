"""fashionclf: a reproducible pipeline that sorts fashion product images into categories."""
__version__ = "0.1.0"
