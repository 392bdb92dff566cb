"""
The version of this upnode, read by setup.py too.
"""

__version__ = "0.1.0"
