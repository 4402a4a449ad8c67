"""The central controller: agent gateway, corrections engine, control API and store."""
