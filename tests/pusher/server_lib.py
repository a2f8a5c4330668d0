"""Pusher's Python server library (PyPI `pusher`) against the engine's HTTP API: triggers an
event (and a batch) into channels a pusher-js client listens on, queries channels, and is
refused (401) with a wrong secret. Run by python.test.js: server_lib.py BASE_URL APP_ID KEY SECRET.
Prints one line of JSON with what it saw."""
import json
import sys
from urllib.parse import urlparse

import pusher
from pusher.errors import PusherBadAuth

base, app_id, key, secret = sys.argv[1:5]
url = urlparse(base)
client = pusher.Pusher(app_id=app_id, key=key, secret=secret, host=url.hostname, port=url.port, ssl=False)

seen = {}
seen["trigger"] = client.trigger(["py-news", "private-py"], "py-event", {"from": "python"})
seen["batch"] = client.trigger_batch([
    {"channel": "py-news", "name": "py-batch", "data": {"n": 1}},
    {"channel": "py-news", "name": "py-batch", "data": {"n": 2}},
])
seen["channels"] = client.channels_info(prefix_filter="py-")
seen["channel"] = client.channel_info("py-news", ["subscription_count"])
seen["users"] = client.users_info("presence-py")
# The library signs a private channel's auth as a site's endpoint would; the engine checks it.
seen["auth"] = client.authenticate(channel="private-py", socket_id="1234.1234")

wrong = pusher.Pusher(app_id=app_id, key=key, secret="not-the-secret-0123456789", host=url.hostname,
                      port=url.port, ssl=False)
try:
    wrong.trigger("py-news", "py-event", {"from": "mallory"})
    seen["wrong_secret"] = "accepted"
except PusherBadAuth as e:
    seen["wrong_secret"] = "401: " + str(e).strip()

print(json.dumps(seen))
