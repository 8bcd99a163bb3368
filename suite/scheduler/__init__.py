"""Scheduling a matrix: Ray actors sized by hardware profiles, fault isolation, recording.

Modules: `resources` (profile -> Ray options, feasibility), `hardware` (what a worker
actually has, calibration), `flops` (training FLOP estimate), `worker` (runs cells in
one process, shared by both executors), `faults` (timeout and crash rows), `cluster`
(embedded or joined Ray), `ray_executor` and `local` (the two executors).
"""
