"""Tests of the result lifecycle and the autoverification rules."""
