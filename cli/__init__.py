"""The `shielding` command line: a front end on top of the service layer; nothing below imports it."""
