"""The ``backstop`` command line: daemons (controller, agent) and the operator verbs."""
