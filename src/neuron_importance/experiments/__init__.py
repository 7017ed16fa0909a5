"""Reproductions of the experiments of the papers this project implements.

Each module is one experiment, run from the command line by ``neuron-importance reproduce
NAME`` (see :mod:`neuron_importance.cli.reproduce`) and callable in-process:

* :mod:`neuron_importance.experiments.neuron_ig`: neuron importance of a hidden conv layer
  and a dense layer of the MNIST CNN by Total Conductance ("Neuron Integrated Gradients"),
  DeepLIFT and activation: agreement between the scores, ablation curves, time per example.
"""
