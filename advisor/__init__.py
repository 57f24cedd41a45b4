"""Design advisor."""
