"""Errors of the classifier, worded for people; the command line prints them as one line."""


class TrainingError(Exception):
    """Training, scoring or loading a model cannot go on, and the message says why."""
