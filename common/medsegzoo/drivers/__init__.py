"""Run drivers: experiments made of many bundle runs (the A-Eval protocols, TCSeg's multi-seed
protocol). They launch bundles only through :mod:`medsegzoo.bundle_runs` and score only through
:func:`medsegzoo.evaluation.scoring.score_predictions`.

Import the defining module (``medsegzoo.drivers.<module>``); this package re-exports nothing.
"""
