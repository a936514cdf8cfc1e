"""ODL Studio application: a Qt-free core (``app.core``), CLI commands (``app.commands``) and Qt views (``app.ui``)."""

__version__ = "0.1.0"
