"""Run the real ``curator`` command with engine hosts routed to a loopback test server.

    python -m tests.helpers.crawl_cli '{"www.bing.com": "http://127.0.0.1:PORT/bing"}' crawl ...

The one substitution is at the network's edge: the crawl's HTTP session sends those hosts'
requests to the given base URLs. Everything else is the command as users run it.
"""

from __future__ import annotations

import json
import sys

from curator.cli import main
from curator.crawl import runner

routes = json.loads(sys.argv.pop(1))
_real = runner.new_session
runner.new_session = lambda **kw: _real(**{**kw, "routes": routes})
sys.argv[0] = "curator"
main()
