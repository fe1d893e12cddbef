"""interpsharp: when does weight-space interpolation of CLIP succeed?"""

__version__ = "0.1.0"
