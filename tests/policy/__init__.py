"""Policy files: parsing, refusals and matching."""
