"""Marketplaces: loading (PAWS-X, ESCI, any table, the Hub), splitting, subsampling and validation.

``load_marketplaces`` is the one entry point; the rest is exported for notebooks and tests.
"""

from frkit.data.esci import LOCALES as ESCI_LOCALES
from frkit.data.esci import load_esci
from frkit.data.hub import HUB_DATASETS, esci_from_hub, load_hub, pawsx_from_hub
from frkit.data.loaders import load_marketplaces
from frkit.data.marketplace import COLUMNS, SPLITS, Marketplace
from frkit.data.pawsx import LANGUAGES as PAWSX_LANGUAGES
from frkit.data.pawsx import load_pawsx
from frkit.data.split import carve_validation, subsample, subsample_marketplaces
from frkit.data.table import load_tables, read_table, to_pairs
from frkit.data.validate import SOURCES, check_marketplace, check_marketplaces

__all__ = [
    "COLUMNS",
    "ESCI_LOCALES",
    "HUB_DATASETS",
    "PAWSX_LANGUAGES",
    "SOURCES",
    "SPLITS",
    "Marketplace",
    "carve_validation",
    "check_marketplace",
    "check_marketplaces",
    "esci_from_hub",
    "load_esci",
    "load_hub",
    "load_marketplaces",
    "load_pawsx",
    "load_tables",
    "pawsx_from_hub",
    "read_table",
    "subsample",
    "subsample_marketplaces",
    "to_pairs",
]
