"""The three stages as plain functions of a composed config; the root scripts only wrap them."""
