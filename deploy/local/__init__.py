"""The local stack: real services run as plain processes under one runtime folder."""
