"""The machines a plan runs on: the hardware and link catalog (`catalog`) and latency
prediction for a target (`predict`). Imports `graph` and `measure`, never `plans` or above.
"""
