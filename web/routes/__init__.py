"""The API's routes, one module an audience: auth, intake, reviews, directory, contact (brokering contact with
a shielded child), audit, users, health."""
