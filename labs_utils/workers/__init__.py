"""labs_utils.workers."""
