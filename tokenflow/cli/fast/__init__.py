"""The CLI's cached-token path; imports only the standard library and :mod:`tokenflow.base`."""
