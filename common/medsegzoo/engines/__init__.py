"""Training and evaluation engines that plain MONAI/ignite components cannot express
(multi-head and mean-teacher trainers, checkpoint resume, cross-dataset protocol drivers).

Import the defining module (``medsegzoo.engines.<module>``); this package re-exports nothing,
so importing one engine never pulls in another's dependencies.
"""
