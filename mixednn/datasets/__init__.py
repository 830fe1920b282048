"""Example data sets bundled with mixednn.

Six small, permissively licensed data sets are shipped with the package
(see ``data/README.md`` for sources, licences and column meanings):

============  ===========  ==================================================
name          shape        content
============  ===========  ==================================================
bikeshare     8645 x 15    hourly bike rentals, Washington DC, 2011 (ISLP)
auto          392 x 9      fuel economy of 392 cars (ISLP)
penguins      344 x 8      Palmer penguins, incomplete rows kept
diamonds      53940 x 10   diamond prices (ggplot2 via plotnine)
wage_panel    4360 x 12    545 men x 8 years, 1980-1987 (linearmodels)
gapminder     1704 x 6     142 countries x 12 years (causaldata)
============  ===========  ==================================================

Examples
--------
>>> from mixednn import datasets
>>> datasets.list()["name"].tolist()
['bikeshare', 'auto', 'penguins', 'diamonds', 'wage_panel', 'gapminder']
>>> datasets.load("penguins").shape
(344, 8)
"""

from .loaders import available, list_datasets, load

# ``list`` is the public spelling; it is bound last and left out of
# ``__all__`` so that ``from mixednn.datasets import *`` cannot shadow the
# builtin ``list`` in the caller's namespace.
list = list_datasets  # noqa: A001

__all__ = ["load", "list_datasets", "available"]
