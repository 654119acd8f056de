"""The dashboard's pages, one module a screen."""
