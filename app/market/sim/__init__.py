"""The built-in exchange: market sources (synthetic, replay), the servers speaking each exchange's protocol, order
matching with accounts and the trading API, and the command line that runs it as a process of its own."""
