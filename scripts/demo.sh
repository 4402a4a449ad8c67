#!/usr/bin/env bash
# Run the local demo: controller, agent and a model server on this machine, corrected live.
source "$(dirname "$0")/env.sh"
exec backstop demo "$@"
