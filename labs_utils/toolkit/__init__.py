"""labs_utils.toolkit."""
