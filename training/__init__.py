"""The compact training module: the lecture's activations, initialization, dropout and losses, small models,
datasets, and the ``python -m training.train`` script that trains with an augpipe Pipeline.

Imports augpipe, never the reverse. Submodules are imported on demand so that ``training.activations`` works
without the training extras (scikit-learn, matplotlib, tqdm).
"""
