"""The shielding web service: the JSON API under /api/ (and, later, the pages staff use), behind sign-in."""
