"""Checking plans by running them: building each candidate's sessions, fidelity against FP32,
the speed guard (`core`), ranking (`rank`), and runs through real agents (`split`, `onsite`).
"""
