"""``backstop demo``: everything local, on embedded defaults, narrated step by step.

It runs the controller, an agent and a small model server as real processes and drives them with
the real ``backstop`` command line, exactly as an operator would.
"""
