"""The API's routes, one module an audience: auth, intake, reviews, directory, audit, users, health."""
