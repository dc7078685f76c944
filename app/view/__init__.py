"""The read model between the session and the widgets: frozen, keyed snapshots built without Qt.

One module per part of the screen (decisions, market: watchlist / book / tape, blotter: orders / fills / positions /
history, ticket: account and the order ticket's figures, status: the status bar). ``model.ViewModel`` builds them
all from a session at the refresh rate; widgets render snapshots and never walk the session's objects.
"""
