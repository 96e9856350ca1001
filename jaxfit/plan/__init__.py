"""A config (or a call with arrays) lowered once into plain, frozen plans: what every
runner takes. ``lowering`` builds them (``plans``), with each fit's starts drawn from
its index (``sweep``), the user's model function (``functions``) and data files
(``datafile``)."""
