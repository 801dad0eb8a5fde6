"""frkit: multilingual continual learning of query-product relevance.

Layers (each imports only from the ones below): cli -> runner -> methods -> train -> data/models -> core.
"""

__version__ = "0.1.0"
